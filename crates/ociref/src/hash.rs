//! Hashing while bytes pass: a plain [`Hasher`], a [`DigestVerifier`] that
//! knows the digest to expect, and reader/writer adapters.

use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use sha2::Digest as _;
use std::io::{self, Read, Write};

/// Hashes bytes with one algorithm and yields their [`Digest`].
#[derive(Clone)]
pub struct Hasher {
    state: State,
    bytes: u64,
}

#[derive(Clone)]
enum State {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Hasher {
        let state = match algorithm {
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
        };
        Hasher { state, bytes: 0 }
    }

    /// Hashes `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        match &mut self.state {
            State::Sha256(h) => h.update(bytes),
            State::Sha512(h) => h.update(bytes),
        }
    }

    /// How many bytes were hashed.
    pub fn bytes_seen(&self) -> u64 {
        self.bytes
    }

    /// The algorithm hashed with.
    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            State::Sha256(_) => Algorithm::Sha256,
            State::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// The digest of everything hashed.
    pub fn finish(self) -> Digest {
        match self.state {
            State::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.finalize()),
            State::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.finalize()),
        }
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hashes bytes as they pass and checks them against an expected digest.
///
/// ```
/// use std::io::Write;
/// let expected = ociref::Digest::sha256_of(b"hello");
/// let mut verifier = ociref::DigestVerifier::new(expected.clone())?;
/// verifier.write_all(b"hel")?;
/// verifier.update(b"lo");
/// assert_eq!(verifier.bytes_seen(), 5);
/// assert_eq!(verifier.finish()?, expected);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct DigestVerifier {
    expected: Digest,
    hasher: Hasher,
}

impl DigestVerifier {
    /// A verifier for `expected`; fails when its algorithm is unsupported.
    pub fn new(expected: Digest) -> Result<Self, Error> {
        let algorithm = expected.supported_algorithm()?;
        Ok(DigestVerifier {
            expected,
            hasher: Hasher::new(algorithm),
        })
    }

    /// Hashes `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// How many bytes were hashed.
    pub fn bytes_seen(&self) -> u64 {
        self.hasher.bytes_seen()
    }

    /// The digest expected.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// The digest of the bytes seen if it is the expected one, else
    /// [`Error::DigestMismatch`] with both.
    pub fn finish(self) -> Result<Digest, Error> {
        self.expected.expect(self.hasher.finish())
    }
}

impl Write for DigestVerifier {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes exactly the bytes its inner writer accepted.
///
/// ```
/// use std::io::Write;
/// let mut writer = ociref::HashingWriter::new(Vec::new(), ociref::Algorithm::Sha256);
/// writer.write_all(b"abc")?;
/// let (bytes, digest) = writer.finish();
/// assert_eq!(bytes, b"abc");
/// assert_eq!(digest, ociref::Digest::sha256_of(b"abc"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`, hashing with `algorithm`.
    pub fn new(inner: W, algorithm: Algorithm) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(algorithm),
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.hasher.bytes_seen()
    }

    /// The inner writer and the digest of everything written.
    pub fn finish(self) -> (W, Digest) {
        (self.inner, self.hasher.finish())
    }

    /// The inner writer if what passed hashes to `expected`, else
    /// [`Error::DigestMismatch`] with both digests.
    pub fn verify(self, expected: &Digest) -> Result<W, Error> {
        let (inner, actual) = self.finish();
        expected.expect(actual).map(|_| inner)
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, mutably. Bytes moved through it directly are not
    /// hashed.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // `min` guards against an inner writer claiming more than it got.
        let written = self.inner.write(buf)?.min(buf.len());
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes exactly the bytes read through it.
///
/// ```
/// use std::io::Read;
/// let expected = ociref::Digest::sha256_of(b"abc");
/// let mut reader = ociref::HashingReader::new(&b"abc"[..], ociref::Algorithm::Sha256);
/// std::io::copy(&mut reader, &mut std::io::sink())?;
/// reader.verify(&expected)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`, hashing with `algorithm`.
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(algorithm),
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.hasher.bytes_seen()
    }

    /// The inner reader and the digest of everything read.
    pub fn finish(self) -> (R, Digest) {
        (self.inner, self.hasher.finish())
    }

    /// The inner reader if what passed hashes to `expected`, else
    /// [`Error::DigestMismatch`] with both digests.
    pub fn verify(self, expected: &Digest) -> Result<R, Error> {
        let (inner, actual) = self.finish();
        expected.expect(actual).map(|_| inner)
    }

    /// The inner reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The inner reader, mutably. Bytes moved through it directly are not
    /// hashed.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?.min(buf.len());
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}
