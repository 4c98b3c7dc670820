//! Decisions on ambiguous cases, written down so a reader finds the why.
//!
//! # References
//! - **Registry detection** follows the distribution grammar: the first
//!   path component is a registry when it contains `.` or `:`, or is exactly
//!   `localhost`. Otherwise the image is on Docker Hub. Docker also takes a
//!   first component with uppercase letters (`Foo/bar`) for a registry host;
//!   we do not, because nobody runs a registry on a dotless uppercase host
//!   and the user almost surely meant a Hub repository, so the answer is
//!   "repository must be lowercase" rather than a connection error to host
//!   `Foo`.
//! - **Registry case**: uppercase is allowed in the registry only, and the
//!   registry is stored lowercased (host names are case-insensitive), so
//!   `GHCR.io/o/r` and `ghcr.io/o/r` are one reference and one cache entry.
//!   Docker keeps the case as typed.
//! - **Docker Hub**: `index.docker.io` and `registry-1.docker.io` become
//!   `docker.io`; one-component Hub names get `library/`. API requests go to
//!   `registry-1.docker.io` ([`crate::Reference::registry_api_host`]).
//! - **Default tag** `latest` only when neither tag nor digest is given;
//!   `name@sha256:…` keeps no tag. `name:tag@digest` keeps both; the digest
//!   is what identifies the content, the tag is kept for display.
//! - **`Display`** is the full normalized form,
//!   `registry/repository[:tag][@digest]`, and always parses back to an
//!   equal value. [`crate::Reference::familiar`] is docker's short form,
//!   except that a Hub repository whose first component would read as a
//!   registry (`docker.io/foo.com/bar`) keeps `docker.io/`, so the short
//!   form too names the same image.
//! - **Length**: the full normalized name (`docker.io/library/x`, registry
//!   included) may have at most 255 characters, as the distribution grammar
//!   limits the name including its domain. So a bare Hub name may have 237.
//!   Tags have at most 128 characters.
//! - **Ports** are decimal digits naming an existing port (0–65535); the
//!   grammar allows any digits, but a larger number can never be reached.
//! - **IPv6** hosts must be bracketed (`[::1]:5000/a`); an unbracketed one
//!   gets its own reason. Zone indices (`%eth0`) are refused.
//! - **`localhost:5000`** alone is Hub image `library/localhost`, tag `5000`,
//!   as with docker: without a `/` there is no registry part.
//! - A reference that is exactly 64 lowercase hex digits is refused, as
//!   docker does, since it is almost surely an image ID typed by mistake.
//! - Only printable ASCII occurs in references; any other character
//!   (space, tab, newline, non-ASCII) is reported as such, before anything
//!   else is checked.
//! - **Loopback** means `localhost`, any `127.0.0.0/8` address and `[::1]`
//!   (also as `[::ffff:127.x.y.z]`), with any port; callers use plain HTTP
//!   for them by default. Names that merely resolve to a loopback address
//!   are not detected: that would need I/O.
//! - **Building**: fields are private; only parsing and the checking
//!   `with_*` methods build a [`crate::Reference`], so every value is valid.
//!   [`crate::Reference::with_tag`] drops a digest (the pin belonged to the
//!   old tag); [`crate::Reference::with_digest`] keeps the tag.
//!
//! # Digests
//! - `sha256` and `sha512` must be lowercase hex of the exact length. Other
//!   algorithms that follow the OCI grammar parse, so a manifest or
//!   reference that names one can still be read, stored and reported (the
//!   OCI image spec says digests with unrecognized algorithms that follow
//!   the grammar should pass validation); hashing or verifying with them is
//!   [`crate::Error::UnsupportedAlgorithm`], at the moment it is tried.
//! - `Display` and `Debug` are both `algorithm:encoded`, so logs and
//!   assertion failures show the digest as people copy it.
//!
//! # Platforms
//! - Normalization: os lowercased, `macos`/`osx` → `darwin`;
//!   `x86_64`/`x86-64` → `amd64`, and amd64's `v1` is dropped (it is the
//!   baseline); `aarch64` → `arm64`, and arm64 always carries variant `v8`
//!   when none is given; `armhf` → `arm/v7`, `armel` → `arm/v6`, bare `arm`
//!   → `arm/v7` (as containerd does); arm variants `5`…`8` get their `v`;
//!   `i386`…`i686`/`x86` → `386`.
//! - **Display** of arm64 prints the variant: `linux/arm64/v8`. Printing
//!   `linux/arm64` would be shorter, but then the text would hide a part
//!   of what is compared; either way `linux/arm64` and `linux/arm64/v8`
//!   parse to the same value, and what is printed parses back equal.
//! - **Matching** ([`crate::Platform::match_rank`],
//!   [`crate::Platform::best_match`]) is the one resolver every crate uses:
//!   same os and architecture; the exact variant first; then older variants
//!   where newer CPUs run older code (arm `v7` → `v6` → `v5`, arm64 `v9` →
//!   `v8.x` → `v8`, amd64 `v3` → `v2` → baseline); for other architectures
//!   an entry without variant last. A newer variant never matches, and there
//!   is no cross-architecture fallback (amd64 → 386, arm64 → arm): a cache
//!   should hold what was asked for, and a missing platform is a clear error.
//! - [`crate::Platform::host`] is the platform the program was built for.
//!   32-bit arm is assumed `v7` and amd64 baseline: finding the real CPU
//!   level would need reading `/proc/cpuinfo`, which is I/O.
