//! The command line: every command, flag and its help text (clap derive).

use crate::help;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// A local, content-addressed cache of OCI images that turns a reference
/// into a root filesystem.
#[derive(Debug, Parser)]
#[command(name = "cachectl", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// The cache directory (an OCI image layout) [env: CACHECTL_ROOT]
    /// [default: $XDG_CACHE_HOME/cachectl, else ~/.cache/cachectl]
    // CACHECTL_ROOT is read by the settings, so that an error names it.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (every command's shape:
    /// `cachectl generate json-shapes`)
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print nothing but results and errors
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Log more (-v: info, -vv: debug) on stderr
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Platform to pick from multi-platform images, os/arch[/variant], for
    /// the commands that pick one (also given after the command)
    /// [default: the host's]
    #[arg(long, value_name = "PLATFORM")]
    pub(crate) platform: Option<String>,
    /// Reach this registry over plain HTTP (repeatable; loopback always is)
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub(crate) insecure_registries: Vec<String>,
    /// How many blobs transfer at once [default: 4]
    #[arg(long, global = true, value_name = "N")]
    pub(crate) concurrency: Option<usize>,
    /// Mirrors and per-host TLS, containerd's layout (DIR/HOST/hosts.toml)
    /// [env: CACHECTL_HOSTS_DIR] [default: /etc/containerd/certs.d when present]
    // CACHECTL_HOSTS_DIR is read by the settings (an empty value turns
    // mirrors off).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) hosts_dir: Option<PathBuf>,
    /// Verify the registries' TLS certificates; --tls-verify=false accepts any
    /// certificate (it does not switch to plain HTTP: see --insecure-registry)
    /// [default: true]
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1,
        require_equals = true, default_missing_value = "true")]
    pub(crate) tls_verify: Option<bool>,
    /// TLS certificates for every registry, docker's layout: DIR/*.crt trusted
    /// CAs, DIR/client.cert (with DIR/client.key) presented to the registry
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) cert_dir: Option<PathBuf>,
    /// Credentials for the registries the command reaches (not mirrors); without
    /// a password, it is asked on a terminal, else read from standard input
    #[arg(long, global = true, value_name = "USER[:PASSWORD]",
        value_parser = crate::password::parse_creds)]
    pub(crate) creds: Option<crate::password::Creds>,
    /// Credentials file, docker's config.json format, read instead of the default
    /// ones; login and logout write it [default: $DOCKER_CONFIG/config.json]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) authfile: Option<PathBuf>,
    /// How many times a failed request (connection error, 5xx, 408, 429) is
    /// tried again [default: 4]
    #[arg(long, global = true, value_name = "N")]
    pub(crate) retry_times: Option<u32>,
    /// Settings file (TOML: root, platform, concurrency, insecure_registries, hosts_dir,
    /// tls_verify, cert_dir, authfile, retry_times; build's mke2fs, debugfs, tar2sqfs,
    /// mkfs_erofs)
    /// [default: $XDG_CONFIG_HOME/cachectl/config.toml when present]
    #[arg(long, global = true, env = "CACHECTL_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Fetch images into the cache (only what is missing); prints each digest
    #[command(after_help = help::PULL)]
    Pull(PullArgs),
    /// List cached images, most recently used first
    #[command(visible_alias = "ls", after_help = help::IMAGES)]
    Images,
    /// Show a cached image (or, with --remote, one at its registry): manifest,
    /// config, layers, platforms, history
    #[command(after_help = "Examples:\n  cachectl inspect alpine:3.20\n  \
        cachectl inspect --remote --platform linux/arm64 alpine:3.20   # nothing is stored\n  \
        cachectl inspect --remote --raw alpine:3.20 | sha256sum        # the manifest's exact bytes")]
    Inspect {
        /// The image
        reference: String,
        #[command(flatten)]
        chosen: PlatformArg,
        /// Ask the registry instead of the cache (nothing is stored)
        #[arg(long)]
        remote: bool,
        /// Print the manifest's exact bytes (an index for a multi-platform
        /// tag; with --platform, that platform's manifest), as `skopeo
        /// inspect --raw` does
        #[arg(long)]
        raw: bool,
    },
    /// Print the digest a reference has at its registry (one HEAD; nothing is stored)
    #[command(after_help = "Examples:\n  cachectl digest alpine:3.20\n  \
        cachectl digest --platform linux/arm64 alpine:3.20   # that platform's manifest")]
    Digest {
        /// The image; with --platform, the digest of that platform's manifest when the
        /// reference names an index
        reference: String,
        #[command(flatten)]
        chosen: PlatformArg,
    },
    /// List the tags of a repository at its registry
    #[command(
        after_help = "Examples:\n  cachectl tags alpine\n  cachectl tags --json ghcr.io/org/app"
    )]
    Tags {
        /// The repository (a tag or digest in it is ignored)
        repository: String,
    },
    /// List the signatures, SBOMs and other artifacts stored with a cached image
    /// (`pull --referrers` stores them)
    #[command(
        after_help = "Examples:\n  cachectl pull --referrers ghcr.io/org/app:1.0\n  \
        cachectl referrers ghcr.io/org/app:1.0\n  \
        cachectl referrers --raw sha256:… ghcr.io/org/app:1.0   # that referrer's manifest"
    )]
    Referrers {
        /// The cached image
        reference: String,
        /// Print the exact bytes of the manifest of this referrer instead
        #[arg(long, value_name = "DIGEST")]
        raw: Option<String>,
    },
    /// Give a cached image another name
    #[command(after_help = help::TAG)]
    Tag {
        /// The cached image
        source: String,
        /// The new name
        target: String,
    },
    /// Remove names from the cache (blobs go at the next gc)
    #[command(visible_alias = "rmi", after_help = help::RM)]
    Rm {
        /// The images
        #[arg(required = true)]
        references: Vec<String>,
        /// Remove only this platform's entry of an image stored with several
        #[arg(long, value_name = "PLATFORM")]
        platform: Option<String>,
    },
    /// Remove least recently used images, then collect garbage
    #[command(after_help = help::PRUNE)]
    Prune(PruneArgs),
    /// Delete blobs no image needs, and partial downloads past their grace period
    #[command(after_help = help::GC)]
    Gc(GcArgs),
    /// Re-hash every blob, move corrupt ones aside, report what is broken
    #[command(after_help = help::VERIFY)]
    Verify {
        /// Report only problems that break these images
        references: Vec<String>,
        /// Fetch missing and corrupt blobs again from where each image came from
        #[arg(long)]
        repair: bool,
    },
    /// Send a cached image to a registry, keeping its index and platforms
    #[command(
        after_help = "Examples:\n  cachectl push app:1.0 registry.example/app:1.0\n  \
        cachectl push --arch-tags app:1.0 registry.example/app:1.0   # also app:1.0-amd64, app:1.0-arm-v7, …"
    )]
    Push {
        /// The cached image
        source: String,
        /// Where to push it
        destination: String,
        /// Also tag each platform's manifest TAG-ARCH (TAG-arm-v7 with a variant)
        #[arg(long)]
        arch_tags: bool,
    },
    /// Make multi-platform images of cached ones (index create)
    Index {
        /// What to do
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Copy an image between registries, archives, layout directories and the cache
    #[command(after_help = "Locations (skopeo's names):\n  \
        docker://REF                 a registry\n  \
        oci:DIR[:REF]                an OCI image layout directory\n  \
        oci-archive:FILE[:REF]       a tar of an OCI image layout\n  \
        docker-archive:FILE[:REF]    a docker save archive\n  \
        cache:REF, or REF with a /   the cache\n\n\
        Examples:\n  \
        cachectl copy docker://registry.example/app:v1 oci-archive:app.tar\n  \
        cachectl copy oci-archive:app.tar cache:registry.example/app:v1\n  \
        cachectl copy --all-platforms --referrers docker://a.example/app:v1 docker://b.example/app:v1")]
    Copy(CopyArgs),
    /// Show disk usage: total, shared and unique bytes per image
    #[command(after_help = help::DU)]
    Du,
    /// Store the images of OCI or docker archives (tar, gzip or zstd)
    #[command(after_help = help::IMPORT)]
    Import {
        /// The archives
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        chosen: PlatformArg,
        /// Name for an image the archive does not name with a full reference
        #[arg(long, value_name = "REF")]
        name: Option<String>,
    },
    /// Write cached images to an archive, or one image's file system as a tar
    #[command(
        after_help = "Examples:\n  cachectl export alpine:3.20 -o alpine.tar\n  \
        cachectl export --flatten alpine:3.20 -o rootfs.tar   # like crane export\n  \
        cachectl export --flatten alpine:3.20 -o - | tar -tv"
    )]
    Export {
        /// The images
        #[arg(required = true)]
        references: Vec<String>,
        #[command(flatten)]
        chosen: PlatformArg,
        /// The file to write (replaced atomically); with --flatten, `-` is stdout
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Archive format
        #[arg(long, value_enum, default_value_t = ArchiveFormat::Oci)]
        format: ArchiveFormat,
        /// Write the image's final file system as one tar (whiteouts applied,
        /// owners, modes, devices and extended attributes kept) instead of an
        /// image archive
        #[arg(long, conflicts_with = "format")]
        flatten: bool,
    },
    /// Unpack an image into a root filesystem directory (pulls it first if needed)
    #[command(after_help = help::UNPACK)]
    Unpack(UnpackArgs),
    /// Build an ext4, squashfs or erofs image of an image (pulls it first if
    /// needed); prints its path
    #[command(after_help = help::BUILD)]
    Build(BuildArgs),
    /// Check credentials for a registry, then store them in the docker config file
    #[command(after_help = help::LOGIN)]
    Login(LoginArgs),
    /// Remove stored credentials for a registry
    #[command(after_help = help::LOGOUT)]
    Logout {
        /// The registry, e.g. ghcr.io
        registry: String,
    },
    /// Print shell completions, the man page or the --json shapes
    #[command(after_help = help::GENERATE)]
    Generate {
        /// What to print
        #[arg(value_enum)]
        what: Generated,
    },
}

/// `--platform`, on the commands that pick a platform.
#[derive(Debug, Args)]
pub(crate) struct PlatformArg {
    /// Platform to pick from multi-platform images, os/arch[/variant]
    /// [default: the settings file's, else the host's]
    #[arg(long, value_name = "PLATFORM")]
    pub(crate) platform: Option<String>,
}

impl Command {
    /// The `--platform` given after the command, on those that take one.
    pub(crate) fn platform(&self) -> Option<&String> {
        let chosen = match self {
            Command::Pull(args) => &args.chosen,
            Command::Unpack(args) => &args.chosen,
            Command::Build(args) => &args.chosen,
            Command::Copy(args) => &args.chosen,
            Command::Inspect { chosen, .. }
            | Command::Digest { chosen, .. }
            | Command::Import { chosen, .. }
            | Command::Export { chosen, .. } => chosen,
            Command::Rm { platform, .. } => return platform.as_ref(),
            _ => return None,
        };
        chosen.platform.as_ref()
    }

    /// Whether the command stores or copies every platform.
    pub(crate) fn all_platforms(&self) -> bool {
        match self {
            Command::Pull(args) => args.all_platforms,
            Command::Copy(args) => args.all_platforms,
            _ => false,
        }
    }
}

/// `pull`.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The images, e.g. alpine:3.20 or ghcr.io/org/app@sha256:…
    #[arg(required = true)]
    pub(crate) references: Vec<String>,
    #[command(flatten)]
    pub(crate) chosen: PlatformArg,
    /// Store every platform of a multi-platform image
    #[arg(long, conflicts_with = "platform")]
    pub(crate) all_platforms: bool,
    /// Make no request: succeed only for images already cached
    #[arg(long, conflicts_with = "always")]
    pub(crate) offline: bool,
    /// Re-check every blob even when the image is cached
    #[arg(long)]
    pub(crate) always: bool,
    /// Also fetch signatures and SBOMs that refer to the image
    #[arg(long)]
    pub(crate) referrers: bool,
    /// Fail when the registry cannot be reached, even for a cached tag
    /// (default: use the cached digest and say it is stale)
    #[arg(long)]
    pub(crate) no_stale: bool,
}

/// `index`.
#[derive(Debug, Subcommand)]
pub(crate) enum IndexCommand {
    /// Store a multi-platform OCI index of cached single-platform images
    /// (each one's platform from its config) under NAME
    #[command(after_help = "Examples:\n  \
        cachectl index create registry.example/app:1.0 app:1.0-amd64 app:1.0-arm64\n  \
        cachectl index create --push registry.example/app:1.0 app-amd64:1 app-arm64:1\n  \
        cachectl push registry.example/app:1.0 registry.example/app:1.0   # what --push does")]
    Create(IndexCreateArgs),
}

/// `index create`.
#[derive(Debug, Args)]
pub(crate) struct IndexCreateArgs {
    /// The name to store the index under (replaces what it named)
    pub(crate) name: String,
    /// The cached images, one per platform (not indexes)
    #[arg(required = true)]
    pub(crate) references: Vec<String>,
    /// Then push it to NAME, with every image
    #[arg(long)]
    pub(crate) push: bool,
}

/// `copy`.
#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// Where the image is: docker://REF, oci:DIR[:REF], oci-archive:FILE[:REF],
    /// docker-archive:FILE[:REF], cache:REF
    pub(crate) source: String,
    /// Where to copy it (same forms; files and directories are written
    /// atomically)
    pub(crate) destination: String,
    #[command(flatten)]
    pub(crate) chosen: PlatformArg,
    /// Copy every platform of a multi-platform image (its index is kept)
    #[arg(long, conflicts_with = "platform")]
    pub(crate) all_platforms: bool,
    /// Also copy the signatures and SBOMs that refer to the image (from a
    /// registry or the cache, to a registry or the cache)
    #[arg(long)]
    pub(crate) referrers: bool,
}

/// `prune`.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Keep the N most recently used images
    #[arg(long, value_name = "N")]
    pub(crate) keep: Option<usize>,
    /// Keep the cache under this size, e.g. 10GiB or 500MB
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_size: Option<u64>,
    /// Remove images not used for this long, e.g. 7d, 12h, 30m
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub(crate) older_than: Option<std::time::Duration>,
    /// Show what would be removed; remove nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) partials: GcArgs,
}

/// `gc`, and the collection `prune` runs.
#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Keep partial downloads written to within this time, e.g. 24h, 30m, 0s,
    /// so that an interrupted pull resumes from them
    #[arg(long, value_name = "AGE", value_parser = parse_age, default_value = "24h")]
    pub(crate) keep_partials: std::time::Duration,
}

/// `unpack`.
#[derive(Debug, Args)]
pub(crate) struct UnpackArgs {
    /// The image
    pub(crate) reference: String,
    /// The target directory (absent or empty); with --format tar, the file
    /// to write (replaced atomically), or - for stdout
    #[arg(value_name = "DIR|FILE|-")]
    pub(crate) directory: PathBuf,
    #[command(flatten)]
    pub(crate) chosen: PlatformArg,
    /// Change no owners and create no device nodes on the host (the default
    /// when not root); reports what was not applied
    #[arg(long, conflicts_with = "format")]
    pub(crate) rootless: bool,
    /// Do not pull: fail unless the image is cached
    #[arg(long)]
    pub(crate) offline: bool,
    /// What to write: a directory tree, or the image's file system as one
    /// tar (whiteouts applied; owners, modes, devices and extended
    /// attributes kept, whoever runs it)
    #[arg(long, value_enum, default_value_t = UnpackFormat::Dir)]
    pub(crate) format: UnpackFormat,
}

/// What `unpack` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum UnpackFormat {
    /// A directory tree
    Dir,
    /// One tar of the final file system
    Tar,
}

/// `build`.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The image
    pub(crate) reference: String,
    #[command(flatten)]
    pub(crate) chosen: PlatformArg,
    /// Copy the image here (default: print the path of the cached image,
    /// which must not be written to)
    #[arg(short, long, value_name = "FILE", conflicts_with = "per_layer")]
    pub(crate) output: Option<PathBuf>,
    /// Image size, e.g. 2GiB (default: the content plus --headroom)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with = "per_layer")]
    pub(crate) size: Option<u64>,
    /// Free space added to a computed ext4 size [default: 64MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) headroom: Option<u64>,
    /// File system label, ext4 and erofs (at most 16 bytes) [default: rootfs]
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// Place a host file in the image, mode 0755, at PATH (default /sbin/init)
    #[arg(long, value_name = "FILE[:PATH]", conflicts_with = "per_layer")]
    pub(crate) init: Option<String>,
    /// One image (of --fs) per layer, overlayfs whiteouts, printed base first
    /// (each a cached file sized to its layer: not with -o, --size or --init)
    #[arg(long)]
    pub(crate) per_layer: bool,
    /// Unpack without changing owners on the host (owners, modes and device
    /// nodes are still right inside the image)
    #[arg(long)]
    pub(crate) rootless: bool,
    /// Do not pull: fail unless the image is cached
    #[arg(long)]
    pub(crate) offline: bool,
    /// How the ext4 image is made: cachectl's own writer fed the merged
    /// layers (no mke2fs), or mke2fs reading them as one tar stream (needs
    /// e2fsprogs 1.47.1 or later with libarchive), or an unpacked tree
    /// [default: writer]
    #[arg(long, value_enum)]
    pub(crate) input: Option<BuildInput>,
    /// File system of the image: ext4 (writable), or squashfs or erofs
    /// (read-only, compressed, made from the merged tar stream)
    #[arg(long, value_enum, default_value_t = BuildFs::Ext4)]
    pub(crate) fs: BuildFs,
    /// Compressor of a squashfs or erofs image and its level, e.g. lz4 or
    /// zstd,3 [default: lz4]
    #[arg(long, value_name = "NAME[,LEVEL]")]
    pub(crate) compressor: Option<String>,
    /// Also write FILE.json beside -o FILE: what the image was built from
    /// and with, and its SHA-256 (docs/cli.md)
    #[arg(long, requires = "output", conflicts_with = "per_layer")]
    pub(crate) provenance: bool,
    #[command(flatten)]
    pub(crate) tools: ToolArgs,
}

/// The programs `build` runs, by path (each also a settings key; the flag
/// wins).
#[derive(Debug, Args)]
#[command(next_help_heading = "Programs")]
pub(crate) struct ToolArgs {
    /// The mke2fs to run (settings key mke2fs) [default: from PATH, then
    /// /usr/sbin and /sbin]
    #[arg(long, value_name = "PATH")]
    pub(crate) mke2fs: Option<PathBuf>,
    /// The debugfs to run (settings key debugfs) [default: as mke2fs]
    #[arg(long, value_name = "PATH")]
    pub(crate) debugfs: Option<PathBuf>,
    /// The tar2sqfs to run for --fs squashfs (settings key tar2sqfs)
    /// [default: as mke2fs]
    #[arg(long, value_name = "PATH")]
    pub(crate) tar2sqfs: Option<PathBuf>,
    /// The mkfs.erofs to run for --fs erofs (settings key mkfs_erofs)
    /// [default: as mke2fs]
    #[arg(long, value_name = "PATH")]
    pub(crate) mkfs_erofs: Option<PathBuf>,
}

impl ToolArgs {
    /// The paths given, in the order of [`crate::settings::TOOLS`].
    pub(crate) fn given(&self) -> [Option<&PathBuf>; 4] {
        [
            self.mke2fs.as_ref(),
            self.debugfs.as_ref(),
            self.tar2sqfs.as_ref(),
            self.mkfs_erofs.as_ref(),
        ]
    }
}

/// The file system `build` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BuildFs {
    /// ext4, by mke2fs: writable, sized with headroom
    Ext4,
    /// squashfs, by tar2sqfs (squashfs-tools-ng): read-only
    Squashfs,
    /// erofs, by mkfs.erofs (erofs-utils 1.8 or later): read-only
    Erofs,
}

impl BuildFs {
    /// The [`rootfs::FsType`] it names.
    pub(crate) fn fs_type(self) -> rootfs::FsType {
        match self {
            BuildFs::Ext4 => rootfs::FsType::Ext4,
            BuildFs::Squashfs => rootfs::FsType::Squashfs,
            BuildFs::Erofs => rootfs::FsType::Erofs,
        }
    }
}

/// How `build` makes an ext4 image.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum BuildInput {
    /// cachectl's own ext4 writer, fed the merged layers (no mke2fs)
    Writer,
    /// mke2fs reading the layers unpacked into a directory
    Tree,
    /// mke2fs reading the layers merged into one tar stream (no tree, no
    /// root)
    TarStream,
}

/// `login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The registry, e.g. ghcr.io or registry.example:5000
    pub(crate) registry: String,
    /// User name
    #[arg(short, long)]
    pub(crate) username: String,
    /// Read the password (or token) from standard input
    #[arg(long, required = true)]
    pub(crate) password_stdin: bool,
}

/// What `generate` prints.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Generated {
    /// bash completions
    Bash,
    /// zsh completions
    Zsh,
    /// fish completions
    Fish,
    /// The man page (roff)
    Man,
    /// The shape of what each command prints with --json
    JsonShapes,
}

/// Formats of `export`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum ArchiveFormat {
    /// An OCI image layout in a tar (skopeo `oci-archive:`)
    Oci,
    /// A `docker save` archive (`docker load`, skopeo `docker-archive:`)
    Docker,
}

fn parse_size(text: &str) -> Result<u64, String> {
    crate::units::size(text)
        .ok_or_else(|| format!("{text:?} is not a size (examples: 10GiB, 500MB, 4096)"))
}

fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    crate::units::age(text)
        .ok_or_else(|| format!("{text:?} is not an age (examples: 7d, 12h, 30m, 45s, 2w)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
