//! Decisions on ambiguous cases, written down so a reader finds the why.
//!
//! # References
//! - **Registry detection** follows docker: the first path component is a
//!   registry when it contains `.` or `:`, is `localhost`, or contains an
//!   uppercase letter (so `Foo/bar` names registry `Foo`, which users never
//!   mean but docker does the same). Otherwise the image is on Docker Hub.
//! - **Docker Hub**: `index.docker.io` and `registry-1.docker.io` become
//!   `docker.io`; one-component Hub names get `library/`. API requests go to
//!   `registry-1.docker.io` ([`crate::Reference::registry_api_host`]).
//! - **Default tag** `latest` only when neither tag nor digest is given;
//!   `name@sha256:…` keeps no tag.
//! - **Length**: the full normalized name (`docker.io/library/x`) may have
//!   at most 255 characters, as the distribution grammar limits the name
//!   including its domain. Tags at most 128.
//! - **Uppercase** anywhere in the repository is an error ("repository must be
//!   lowercase"); in the registry it is allowed (host names are
//!   case-insensitive) and kept as typed.
//! - A repository that is 64 hex characters on its own is refused, as docker
//!   does, since it is almost surely an image ID typed by mistake.
//! - **Loopback** means `localhost`, any `127.0.0.0/8` address and `[::1]`,
//!   with any port; callers use plain HTTP for them by default.
//!
//! # Digests
//! - `sha256` and `sha512` must be lowercase hex of the exact length. Other
//!   algorithms that follow the OCI grammar parse, so a manifest that names
//!   one can still be read and reported, but hashing or verifying with them
//!   is [`crate::Error::UnsupportedAlgorithm`].
//!
//! # Platforms
//! - Normalization: `x86_64`/`x86-64` → `amd64` (variant `v1` dropped),
//!   `aarch64` → `arm64`, arm64 always carries variant `v8` (so
//!   `linux/arm64` and `linux/arm64/v8` are equal and both print as
//!   `linux/arm64/v8`), `armhf` → `arm/v7`, `armel` → `arm/v6`, bare `arm`
//!   → `arm/v7`, `i386`…`i686`/`x86` → `386`, os lowercased, `macos` →
//!   `darwin`.
//! - Matching ([`crate::Platform::match_rank`]): same os and architecture;
//!   an exact variant first; for 32-bit arm, older variants as fallbacks
//!   (`v7` then `v6` then `v5`); an index entry without a variant last.
