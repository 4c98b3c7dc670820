//! Extended attributes as ext4 stores them: in the inode's spare bytes when
//! they fit, else in one attribute block (blocks with the same attributes
//! are shared). POSIX ACLs are converted from the form `getxattr` gives
//! (and tar layers carry) to ext4's own.

/// The magic number of an attribute block and of the in-inode area.
pub(super) const MAGIC: u32 = 0xEA02_0000;
/// Room after the in-inode magic of a 256-byte inode with 32 extra bytes.
pub(super) const IN_INODE_ROOM: usize = 256 - 128 - 32 - 4;
/// An attribute block's header.
const BLOCK_HEADER: usize = 32;

/// One attribute, ready to store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Attr {
    index: u8,
    name: Vec<u8>,
    value: Vec<u8>,
}

/// Where an inode's attributes go.
pub(super) enum Placement {
    /// None.
    Nothing,
    /// In the inode: the bytes from offset 160 to 256.
    InInode(Vec<u8>),
    /// In an attribute block with this content (4 KiB).
    Block(Vec<u8>),
}

/// `name` and `value` as stored: the name's index and rest, an ACL
/// converted; a name outside the namespaces ext4 knows, or an ACL that is
/// not one, is refused in words.
pub(super) fn attr(name: &str, value: &[u8]) -> Result<Attr, String> {
    const PREFIXES: [(&str, u8); 4] = [
        ("user.", 1),
        ("trusted.", 4),
        ("security.", 6),
        ("system.", 7),
    ];
    let (index, rest, value) = match name {
        "system.posix_acl_access" => (2, "", acl(value).ok_or("a malformed POSIX ACL")?),
        "system.posix_acl_default" => (3, "", acl(value).ok_or("a malformed POSIX ACL")?),
        _ => {
            let (prefix, index) = PREFIXES
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix))
                .ok_or("a namespace ext4 does not hold")?;
            (*index, &name[prefix.len()..], value.to_vec())
        }
    };
    if rest.len() > 255 {
        return Err("a name longer than 255 bytes".to_owned());
    }
    Ok(Attr {
        index,
        name: rest.as_bytes().to_vec(),
        value,
    })
}

/// A POSIX ACL in the `getxattr` form (version 2, 8-byte entries) in
/// ext4's (version 1; owner, group, mask and other entries without an ID).
fn acl(value: &[u8]) -> Option<Vec<u8>> {
    let (head, entries) = value.split_at_checked(4)?;
    if head != 2u32.to_le_bytes() || entries.len() % 8 != 0 {
        return None;
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for entry in entries.chunks(8) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        out.extend_from_slice(&entry[..4]);
        match tag {
            // ACL_USER, ACL_GROUP: with the ID.
            0x02 | 0x08 => out.extend_from_slice(&entry[4..8]),
            0x01 | 0x04 | 0x10 | 0x20 => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Where `attrs` go; `None` when they fit neither the inode nor a block.
pub(super) fn place(attrs: &[Attr]) -> Option<Placement> {
    if attrs.is_empty() {
        return Some(Placement::Nothing);
    }
    let entries: usize = attrs.iter().map(entry_len).sum();
    let values: usize = attrs
        .iter()
        .map(|a| a.value.len().next_multiple_of(4))
        .sum();
    if entries + 4 + values <= IN_INODE_ROOM {
        return Some(Placement::InInode(in_inode(attrs)));
    }
    if BLOCK_HEADER + entries + 4 + values <= 4096 {
        return Some(Placement::Block(block(attrs)));
    }
    None
}

fn entry_len(attr: &Attr) -> usize {
    (16 + attr.name.len()).next_multiple_of(4)
}

/// The in-inode area: magic, entries, values from the end; value offsets
/// count from the first entry.
fn in_inode(attrs: &[Attr]) -> Vec<u8> {
    let mut area = vec![0u8; 4 + IN_INODE_ROOM];
    area[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    write_entries(&mut area[4..], 0, attrs);
    area
}

/// An attribute block holding `attrs` (sorted as the kernel looks them up)
/// with a reference count of 1 (set by the caller when shared).
fn block(attrs: &[Attr]) -> Vec<u8> {
    let mut sorted = attrs.to_vec();
    sorted.sort_by(|a, b| (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name)));
    let mut out = vec![0u8; 4096];
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&1u32.to_le_bytes());
    out[8..12].copy_from_slice(&1u32.to_le_bytes());
    let hashes = write_entries(&mut out, BLOCK_HEADER, &sorted);
    let mut hash = 0u32;
    for h in hashes {
        hash = (hash << 16) ^ (hash >> 16) ^ h;
    }
    out[12..16].copy_from_slice(&hash.to_le_bytes());
    out
}

/// Sets the reference count of an attribute block.
pub(super) fn set_refcount(block: &mut [u8], count: u32) {
    block[4..8].copy_from_slice(&count.to_le_bytes());
}

/// Writes the entries of `attrs` into `area` from `first` on, values from
/// the end of `area` down (offsets from the start of `area`);
/// returns each entry's hash.
fn write_entries(area: &mut [u8], first: usize, attrs: &[Attr]) -> Vec<u32> {
    let mut at = first;
    let mut value_end = area.len();
    let mut hashes = Vec::new();
    for attr in attrs {
        let padded = attr.value.len().next_multiple_of(4);
        value_end -= padded;
        area[value_end..value_end + attr.value.len()].copy_from_slice(&attr.value);
        let hash = entry_hash(&attr.name, &attr.value);
        hashes.push(hash);
        let entry = &mut area[at..at + entry_len(attr)];
        entry[0] = attr.name.len() as u8;
        entry[1] = attr.index;
        let offset = if attr.value.is_empty() { 0 } else { value_end };
        entry[2..4].copy_from_slice(&(offset as u16).to_le_bytes());
        entry[8..12].copy_from_slice(&(attr.value.len() as u32).to_le_bytes());
        entry[12..16].copy_from_slice(&hash.to_le_bytes());
        entry[16..16 + attr.name.len()].copy_from_slice(&attr.name);
        at += entry_len(attr);
    }
    hashes
}

/// The hash of an entry (`ext4_xattr_hash_entry`, name bytes signed as
/// on x86).
fn entry_hash(name: &[u8], value: &[u8]) -> u32 {
    let mut hash = 0u32;
    for &byte in name {
        hash = (hash << 5) ^ (hash >> 27) ^ (byte as i8 as i32 as u32);
    }
    for word in value.chunks(4) {
        let mut bytes = [0u8; 4];
        bytes[..word.len()].copy_from_slice(word);
        hash = (hash << 16) ^ (hash >> 16) ^ u32::from_le_bytes(bytes);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_into_index_and_rest() {
        let a = attr("user.mime", b"text").expect("user");
        assert_eq!((a.index, a.name.as_slice()), (1, &b"mime"[..]));
        assert_eq!(attr("security.selinux", b"x").expect("security").index, 6);
        let err = attr("weird.name", b"x").expect_err("refused");
        assert!(err.contains("namespace"), "{err}");
    }

    #[test]
    fn acls_take_ext4s_short_form() {
        // user::rw-, user:1000:r--, group::r--, mask::r--, other::---
        let mut vfs = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            vfs.extend_from_slice(&tag.to_le_bytes());
            vfs.extend_from_slice(&perm.to_le_bytes());
            vfs.extend_from_slice(&id.to_le_bytes());
        }
        let a = attr("system.posix_acl_access", &vfs).expect("acl");
        assert_eq!(a.index, 2);
        assert_eq!(a.value.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(&a.value[8..16], &[2, 0, 4, 0, 0xe8, 3, 0, 0]);
        assert!(attr("system.posix_acl_access", b"junk").is_err());
    }

    #[test]
    fn small_attributes_stay_in_the_inode_and_large_ones_take_a_block() {
        let small = [attr("security.capability", &[1; 20]).expect("cap")];
        assert!(matches!(place(&small), Some(Placement::InInode(area)) if area.len() == 96));
        let large = [attr("user.big", &[7; 1000]).expect("big")];
        let Some(Placement::Block(block)) = place(&large) else {
            panic!("a block");
        };
        assert_eq!(&block[0..4], &MAGIC.to_le_bytes());
        // The value ends the block, and the entry says where it starts.
        assert_eq!(block[4095], 7);
        assert_eq!(u16::from_le_bytes([block[34], block[35]]), 4096 - 1000);
        assert!(place(&[attr("user.huge", &[1; 5000]).expect("huge")]).is_none());
    }
}
