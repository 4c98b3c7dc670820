//! Per-layer ext4 and squashfs images (`rootfs::build_layers`) stacked with
//! overlayfs: every whiteout and opaque marker of every layer is checked
//! inside the layer images with `debugfs` or `rdsquashfs`; then, as root and where loop devices and
//! overlayfs work, the images are mounted read-only, stacked with
//! `mount -t overlay -o lowerdir=top:…:base`, and the merged tree is
//! compared with `rootfs::unpack` of the same image.

use crate::rootfs_compare::{Node, differences, tree};
use crate::rootfs_readonly::erofs_reads_tars;
use crate::rootfs_support::{
    debugfs, e2fsck_passes, rootless_build_options, running_as_root, store_with_fixture,
};
use ociref::Reference;
use ocistore::Store;
use rootfs::{BuildOptions, Ext4Input, FsType, UnpackOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Set to `1` to make a failed loop or overlay mount fail the test instead
/// of skipping the mounted comparison (for CI machines known to allow it).
pub(crate) const ENV_REQUIRE_OVERLAY: &str = "CACHECTL_TEST_REQUIRE_OVERLAY";

/// What the layer tars say the layer images must hold.
#[derive(Default)]
struct Markers {
    /// `(layer index, path)` of each `.wh.<name>`, as the path it hides.
    whiteouts: Vec<(usize, String)>,
    /// `(layer index, directory)` of each `.wh..wh..opq`.
    opaque: Vec<(usize, String)>,
    /// Hardlinks whose target is not written by the same layer: the link's
    /// path and its target.
    cross_layer_links: Vec<(String, String)>,
}

fn entry_path(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start_matches("./").trim_start_matches('/');
    text.trim_end_matches('/').to_owned()
}

/// Reads each uncompressed layer tar of `reference` for its whiteouts,
/// opaque markers and hardlinks to lower layers.
fn markers(store: &Store, reference: &Reference) -> Markers {
    let tars = rootfs::layer_tars(&store.image(reference, None).expect("stored image"))
        .expect("layer tars");
    let mut markers = Markers::default();
    for (index, layer) in tars.iter().enumerate() {
        let file = std::fs::File::open(&layer.path).expect("layer tar");
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let mut written = BTreeSet::new();
        let mut links = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let path = entry_path(&entry.path_bytes());
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
            if name == ".wh..wh..opq" {
                markers.opaque.push((index, parent.to_owned()));
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                let hidden = if parent.is_empty() {
                    hidden.to_owned()
                } else {
                    format!("{parent}/{hidden}")
                };
                // A whiteout of what the same layer wrote before it is
                // ignored (see `rootfs::design`): no marker in the image.
                if !written.contains(&hidden) {
                    markers.whiteouts.push((index, hidden));
                }
            } else if entry.header().entry_type() == tar::EntryType::Link {
                let target = entry_path(&entry.link_name_bytes().expect("link target"));
                links.push((path.clone(), target));
            }
            written.insert(path);
        }
        markers.cross_layer_links.extend(
            links
                .into_iter()
                .filter(|(_, target)| !written.contains(target)),
        );
    }
    markers
}

/// Read-only loop mounts and the overlay over them, unmounted (top first)
/// when dropped, also when an assertion fails.
pub(crate) struct Mounts(pub(crate) Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for point in self.0.iter().rev() {
            let unmounted = Command::new("umount")
                .arg(point)
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                eprintln!("umount {} failed; detaching lazily", point.display());
                let _ = Command::new("umount").arg("-l").arg(point).status();
            }
        }
    }
}

impl Mounts {
    /// Runs `mount ARGS SOURCE POINT`, recording `point` on success; the
    /// error is mount's stderr.
    pub(crate) fn mount(
        &mut self,
        args: &[&str],
        source: &Path,
        point: &Path,
    ) -> Result<(), String> {
        std::fs::create_dir_all(point).expect("mount point");
        let output = Command::new("mount")
            .args(args)
            .arg(source)
            .arg(point)
            .output()
            .map_err(|err| format!("mount cannot run: {err}"))?;
        if output.status.success() {
            self.0.push(point.to_path_buf());
            Ok(())
        } else {
            Err(format!(
                "mount {} {} failed: {}",
                args.join(" "),
                source.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

/// What the per-layer check found, for the caller's own assertions.
pub(crate) struct LayerCheck {
    pub(crate) layers: usize,
    pub(crate) whiteouts: usize,
    pub(crate) opaque: usize,
    /// Paths whose hardlink group the overlay splits (a hardlink to a lower
    /// layer is a copy in the upper image); `None` when not mounted.
    pub(crate) split_links: Option<Vec<String>>,
}

/// Each squashfs layer image holds each whiteout the layer tars declare as
/// a 0:0 character device and each opaque directory with the overlay
/// xattr and no marker (read with `rdsquashfs`, no mount needed).
fn assert_markers_in_squashfs_layers(paths: &[&Path], markers: &Markers) {
    let rdsquashfs = |image: &Path, option: &str, path: &str| {
        let output = Command::new("rdsquashfs")
            .arg(option)
            .arg(format!("/{path}"))
            .arg(image)
            .output()
            .expect("rdsquashfs runs");
        assert!(output.status.success(), "rdsquashfs {option} /{path}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for (index, path) in &markers.whiteouts {
        // A whiteout below a directory no layer has hides nothing: the
        // image need not hold it (the overlay comparison shows the rest).
        if let Some((parent, _)) = path.rsplit_once('/') {
            let found = Command::new("rdsquashfs")
                .args(["-s", &format!("/{parent}")])
                .arg(paths[*index])
                .output()
                .expect("rdsquashfs runs");
            if !found.status.success() {
                continue;
            }
        }
        let stat = rdsquashfs(paths[*index], "-s", path);
        assert!(
            stat.contains("Inode type: character device") && stat.contains(": 0:0"),
            "whiteout of /{path} in layer {index} is not a 0:0 character device:\n{stat}"
        );
    }
    for (index, path) in &markers.opaque {
        let xattrs = rdsquashfs(paths[*index], "-x", path);
        assert!(
            xattrs.contains("trusted.overlay.opaque=y"),
            "/{path} of layer {index} is not opaque:\n{xattrs}"
        );
        let listing = rdsquashfs(paths[*index], "-l", path);
        assert!(
            !listing.contains(".wh."),
            "/{path} of layer {index} lists a marker:\n{listing}"
        );
    }
}

/// Each layer image passes e2fsck, each whiteout the layer tars declare is
/// a 0:0 character device and each opaque directory carries the overlay
/// xattr and lists no marker.
fn assert_markers_in_layer_images(paths: &[&Path], markers: &Markers) {
    for path in paths {
        e2fsck_passes(path);
    }
    for (index, path) in &markers.whiteouts {
        // See `assert_markers_in_squashfs_layers`.
        if let Some((parent, _)) = path.rsplit_once('/')
            && debugfs(paths[*index], &format!("stat \"/{parent}\"")).is_empty()
        {
            continue;
        }
        let stat = debugfs(paths[*index], &format!("stat \"/{path}\""));
        assert!(
            stat.contains("Type: character special")
                && stat.contains("Device major/minor number: 00:00"),
            "whiteout of /{path} in layer {index} is not a 0:0 character device:\n{stat}"
        );
    }
    for (index, path) in &markers.opaque {
        let xattrs = debugfs(paths[*index], &format!("ea_list \"/{path}\""));
        assert!(
            xattrs.contains("trusted.overlay.opaque (1) = \"y\""),
            "/{path} of layer {index} is not opaque:\n{xattrs}"
        );
        let listing = debugfs(paths[*index], &format!("ls \"/{path}\""));
        assert!(
            !listing.contains(".wh."),
            "/{path} of layer {index} lists a marker:\n{listing}"
        );
    }
}

/// Mounts each layer image read-only under `dir` and, for more than one,
/// their overlay; returns the merged tree, or why a mount failed.
fn mount_layer_images(mounts: &mut Mounts, paths: &[&Path], dir: &Path) -> Result<PathBuf, String> {
    let mut lower = Vec::new();
    let mut failure = None;
    for (index, path) in paths.iter().enumerate() {
        let point = dir.join(format!("layer-{index}"));
        if let Err(err) = mounts.mount(&["-o", "loop,ro"], path, &point) {
            failure = Some(err);
            break;
        }
        lower.push(point);
    }
    let merged = dir.join("merged");
    if failure.is_none() {
        // overlayfs wants at least two lower directories without an upper.
        let result = if lower.len() == 1 {
            Ok(())
        } else {
            let lowerdir: Vec<String> = lower
                .iter()
                .rev()
                .map(|p| p.to_str().expect("utf-8 mount point").to_owned())
                .collect();
            let option = format!("ro,lowerdir={}", lowerdir.join(":"));
            mounts.mount(
                &["-t", "overlay", "-o", &option],
                Path::new("overlay"),
                &merged,
            )
        };
        if let Err(err) = result {
            failure = Some(err);
        }
    }
    match failure {
        Some(err) => Err(err),
        None if lower.len() == 1 => Ok(lower.swap_remove(0)),
        None => Ok(merged),
    }
}

/// The trees of the overlay (`merged`, without its lost+found) and of the
/// unpack (`target`) with the hardlink groups the overlay splits forgotten,
/// and those split paths; each split must come from a cross-layer link.
fn trees_with_split_links(
    merged: &Path,
    target: &Path,
    markers: &Markers,
    fs: FsType,
) -> (BTreeMap<String, Node>, BTreeMap<String, Node>, Vec<String>) {
    let mut theirs = tree(merged);
    if fs == FsType::Ext4 {
        let lost = theirs
            .remove("lost+found")
            .expect("the ext4 root's lost+found shows through the overlay");
        assert_eq!(lost.kind, "dir");
    }
    let mut ours = tree(target);
    assert!(
        !ours.contains_key("lost+found"),
        "the image itself has a lost+found"
    );
    // A hardlink to a lower layer's file is a copy in the upper image: the
    // overlay shows two inodes where the unpack has one. Each overlay group
    // must lie within the unpack's, and every split must come from such a
    // link; the rest of each node is compared as it is.
    let allowed: BTreeSet<String> = markers
        .cross_layer_links
        .iter()
        .flat_map(|(link, _)| {
            let group = ours.get(link).map(|n| n.hardlinks.clone());
            std::iter::once(link.clone()).chain(group.unwrap_or_default())
        })
        .collect();
    let mut split = Vec::new();
    for (path, node) in &theirs {
        let Some(our) = ours.get(path) else { continue };
        if node.hardlinks == our.hardlinks {
            continue;
        }
        let within = node.hardlinks.iter().all(|p| our.hardlinks.contains(p));
        assert!(
            within && allowed.contains(path),
            "{path}: hardlink group {:?} in the overlay, {:?} in the unpack",
            node.hardlinks,
            our.hardlinks
        );
        split.push(path.clone());
    }
    let forget_links = |nodes: &mut BTreeMap<String, Node>| {
        for path in &split {
            if let Some(node) = nodes.get_mut(path) {
                node.hardlinks.clear();
            }
        }
    };
    forget_links(&mut ours);
    forget_links(&mut theirs);
    (ours, theirs, split)
}

/// Builds the per-layer images of `reference`, checks each whiteout and
/// opaque directory the layer tars declare inside them, and — as root,
/// where a loop mount and overlayfs work — compares the overlay of the
/// images with `rootfs::unpack` of the image using the comparator.
pub(crate) fn assert_layer_images_stack_to_the_unpack(
    store: &Store,
    reference: &Reference,
    dir: &Path,
) -> LayerCheck {
    assert_layer_images_of_type_stack_to_the_unpack(
        store,
        reference,
        dir,
        (FsType::Ext4, false, None),
    )
}

/// [`assert_layer_images_stack_to_the_unpack`] with layer images of type
/// `fs`, built rootless when asked (as they are anyway without root), from
/// the input asked for (ext4).
pub(crate) fn assert_layer_images_of_type_stack_to_the_unpack(
    store: &Store,
    reference: &Reference,
    dir: &Path,
    (fs, rootless, input): (FsType, bool, Option<Ext4Input>),
) -> LayerCheck {
    let as_root = running_as_root();
    let mut options = if as_root && !rootless {
        BuildOptions::default()
    } else {
        rootless_build_options()
    };
    options.fs = fs;
    options.input = input;
    let started = Instant::now();
    let layers = rootfs::build_layers(
        &store.image(reference, None).expect("stored image"),
        &options,
    )
    .expect("layer images");
    eprintln!(
        "{reference}: {} layer images in {:?}",
        layers.len(),
        started.elapsed()
    );
    let markers = markers(store, reference);
    let paths: Vec<&Path> = layers.iter().map(|l| l.path.as_ref()).collect();
    assert!(layers.iter().all(|l| l.fs == fs), "{fs:?}");
    // erofs lowers are checked through the overlay only (below).
    match fs {
        FsType::Ext4 => assert_markers_in_layer_images(&paths, &markers),
        FsType::Squashfs => assert_markers_in_squashfs_layers(&paths, &markers),
        _ => {}
    }
    let mut check = LayerCheck {
        layers: layers.len(),
        whiteouts: markers.whiteouts.len(),
        opaque: markers.opaque.len(),
        split_links: None,
    };
    if !as_root {
        eprintln!("{reference}: OVERLAY MOUNT SKIPPED: not root (only debugfs checks ran)");
        return check;
    }
    let target = dir.join("unpacked");
    rootfs::unpack(
        &store.image(reference, None).expect("stored image"),
        &target,
        &UnpackOptions::default(),
    )
    .expect("unpack");
    let mut mounts = Mounts(Vec::new());
    let mounted = mount_layer_images(&mut mounts, &paths, dir);
    let merged = match mounted {
        Ok(merged) => merged,
        Err(reason) => {
            assert!(
                std::env::var(ENV_REQUIRE_OVERLAY).as_deref() != Ok("1"),
                "{ENV_REQUIRE_OVERLAY}=1 but {reason}"
            );
            eprintln!(
                "{reference}: OVERLAY MOUNT SKIPPED ({reason}); only the debugfs checks of \
                 whiteouts and opaque directories ran"
            );
            return check;
        }
    };
    let (ours, theirs, split) = trees_with_split_links(&merged, &target, &markers, fs);
    let diff = differences(&ours, &theirs);
    assert!(
        diff.is_empty(),
        "{reference}: the overlay of the layer images differs from the unpack \
         (ours = unpack, theirs = overlay):\n{}",
        diff.join("\n")
    );
    eprintln!(
        "{reference}: overlay of {} layer images equals the unpack ({} paths, {} split hardlink paths)",
        layers.len(),
        ours.len(),
        split.len()
    );
    check.split_links = Some(split);
    check
}

#[test]
fn layered_layer_images_stacked_with_overlayfs_equal_the_unpack() {
    // A rootless squashfs build takes owners, devices and whiteouts from
    // what the unpack recorded, not from the tree.
    let mut kinds = vec![
        (FsType::Ext4, false, None),
        (FsType::Ext4, true, Some(Ext4Input::Tree)),
        (FsType::Squashfs, false, None),
        (FsType::Squashfs, true, None),
    ];
    if erofs_reads_tars() {
        kinds.push((FsType::Erofs, true, None));
    }
    for kind in kinds {
        assert_layered_layer_images(kind);
    }
}

fn assert_layered_layer_images(kind: (FsType, bool, Option<Ext4Input>)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let check =
        assert_layer_images_of_type_stack_to_the_unpack(&store, &reference, dir.path(), kind);
    assert_eq!(check.layers, 5);
    // `layered` whites out a file and a directory and has an opaque
    // directory: the checks above must have had something to check.
    assert!(check.whiteouts >= 2, "{} whiteouts", check.whiteouts);
    assert!(check.opaque >= 1, "{} opaque directories", check.opaque);
    if let Some(split) = check.split_links {
        // `bin/tool-hardlink` links to a file of the layer below.
        assert!(
            split.iter().any(|p| p == "bin/tool-hardlink"),
            "cross-layer hardlink not seen as a copy: {split:?}"
        );
    }
}

#[test]
fn layers_that_hide_replace_and_link_stack_to_the_unpack_as_every_kind_of_lower() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kinds = vec![
        (FsType::Ext4, false, None),
        (FsType::Ext4, false, Some(Ext4Input::Tree)),
        (FsType::Squashfs, false, None),
    ];
    if erofs_reads_tars() {
        kinds.push((FsType::Erofs, false, None));
    }
    let cases = crate::rootfs_merge::layered_cases();
    for (number, (name, layers)) in cases.into_iter().enumerate() {
        let encoded: Vec<_> = layers
            .iter()
            .map(|l| crate::rootfs_merge::layer(l))
            .collect();
        for kind in &kinds {
            // No commas: overlayfs splits its lowerdir option on them.
            let input = kind.2.map_or("", Ext4Input::as_str);
            let root = dir
                .path()
                .join(format!("case-{number}-{}{input}", kind.0.as_str()));
            let (store, reference) =
                crate::rootfs_support::hand_built_store(&root.join("store"), &encoded);
            eprintln!("{name}: {:?} {input}", kind.0);
            assert_layer_images_of_type_stack_to_the_unpack(&store, &reference, &root, *kind);
        }
    }
}
