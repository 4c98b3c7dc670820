//! Which file system a store lives on: a network or user-space file system
//! makes every blob write, `fsync` and lock a round trip, and its locks
//! may not hold between hosts (a peer's cache on a network mount made pulls
//! 4x slower: PEERS row 39). The store works there; callers warn.

use crate::layout::Store;

impl Store {
    /// The name of the network or user-space file system the store's root
    /// is on (NFS, SMB/CIFS, 9p, FUSE, Ceph, AFS, Lustre, GlusterFS), or
    /// `None` on a local one (or when it cannot be told).
    pub fn remote_file_system(&self) -> Option<&'static str> {
        let stat = rustix::fs::statfs(self.root()).ok()?;
        remote_kind(stat.f_type as u64)
    }
}

/// The name for the `statfs` magic number `f_type`, when it is a network
/// or user-space file system (`linux/magic.h`, `fs/*/`).
fn remote_kind(f_type: u64) -> Option<&'static str> {
    // `f_type` is signed on some targets: compare the low 32 bits.
    Some(match f_type & 0xFFFF_FFFF {
        0x6969 => "NFS",
        0x517B | 0xFF53_4D42 | 0xFE53_4D42 => "SMB/CIFS",
        0x0102_1997 => "9p",
        // FUSE: sshfs, s3fs, gcsfuse, virtiofs and others.
        0x6573_5546 => "FUSE",
        0x00C3_6400 => "Ceph",
        0x5346_414F => "AFS",
        0x0BD0_0BD0 => "Lustre",
        0x2947_4C45 => "GlusterFS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_and_user_space_file_systems_are_named_and_local_ones_not() {
        assert_eq!(remote_kind(0x6969), Some("NFS"));
        assert_eq!(remote_kind(0xFF53_4D42), Some("SMB/CIFS"));
        // As a sign-extended negative `f_type`.
        assert_eq!(remote_kind(0xFFFF_FFFF_FF53_4D42), Some("SMB/CIFS"));
        assert_eq!(remote_kind(0x0102_1997), Some("9p"));
        assert_eq!(remote_kind(0x6573_5546), Some("FUSE"));
        // ext4, tmpfs, xfs, btrfs, overlayfs.
        for local in [0xEF53, 0x0102_1994, 0x5846_5342, 0x9123_683E, 0x794C_7630] {
            assert_eq!(remote_kind(local), None, "{local:#x}");
        }
    }

    #[test]
    fn a_store_on_this_machines_temp_dir_is_local() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        assert_eq!(store.remote_file_system(), None);
    }
}
