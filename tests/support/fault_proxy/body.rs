//! Copies a response body to the client, applying a body fault on the way.

use super::Fault;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the copy ended, i.e. how the connection must be closed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// The whole body went out.
    Complete,
    /// Cut short: close with a reset (RST).
    Reset,
    /// Cut short: close cleanly (FIN), leaving the body truncated.
    Close,
}

/// Copies `body` to `client`. Offsets in `fault` count body bytes after any
/// chunk framing was removed.
pub(super) fn forward(
    body: &mut dyn Read,
    client: &mut impl Write,
    fault: Option<&Fault>,
    stop: &AtomicBool,
) -> io::Result<Ending> {
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            client.flush()?;
            return Ok(Ending::Complete);
        }
        let chunk = &mut buf[..n];
        let end = sent + n as u64;
        match fault {
            Some(Fault::ResetAfter(cut) | Fault::Truncate(cut)) if end > *cut => {
                client.write_all(&chunk[..offset_in(sent, *cut)])?;
                client.flush()?;
                let reset = matches!(fault, Some(Fault::ResetAfter(_)));
                return Ok(if reset { Ending::Reset } else { Ending::Close });
            }
            Some(Fault::FlipByte(at)) if (sent..end).contains(at) => {
                chunk[offset_in(sent, *at)] ^= 0xff;
                client.write_all(chunk)?;
            }
            Some(Fault::Stall {
                after_bytes,
                duration,
            }) if (sent..end).contains(after_bytes) => {
                let (before, after) = chunk.split_at(offset_in(sent, *after_bytes));
                client.write_all(before)?;
                client.flush()?;
                sleep_unless_stopped(*duration, stop);
                client.write_all(after)?;
            }
            Some(Fault::Throttle { bytes_per_sec }) => {
                write_throttled(client, chunk, *bytes_per_sec, stop)?;
            }
            _ => client.write_all(chunk)?,
        }
        sent = end;
    }
}

/// `at - start` as an index into a buffer that starts at body offset `start`.
fn offset_in(start: u64, at: u64) -> usize {
    usize::try_from(at.saturating_sub(start)).expect("the offset lies within a 16 KiB buffer")
}

/// Writes `data` in tenth-of-a-second slices at about `bytes_per_sec`.
fn write_throttled(
    out: &mut impl Write,
    data: &[u8],
    bytes_per_sec: u64,
    stop: &AtomicBool,
) -> io::Result<()> {
    let slice = usize::try_from(bytes_per_sec / 10)
        .unwrap_or(usize::MAX)
        .max(1);
    for piece in data.chunks(slice) {
        out.write_all(piece)?;
        out.flush()?;
        let secs = piece.len() as f64 / bytes_per_sec.max(1) as f64;
        sleep_unless_stopped(Duration::from_secs_f64(secs), stop);
    }
    Ok(())
}

/// Sleeps for `duration`, or less once the proxy is being stopped.
pub(super) fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &[u8], fault: Fault) -> (Vec<u8>, Ending) {
        let mut out = Vec::new();
        let mut reader = body;
        let ending = forward(&mut reader, &mut out, Some(&fault), &AtomicBool::new(false))
            .expect("in-memory copy");
        (out, ending)
    }

    #[test]
    fn cuts_flips_and_stalls_at_exact_offsets() {
        let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            run(&body, Fault::ResetAfter(20_000)),
            (body[..20_000].to_vec(), Ending::Reset)
        );
        assert_eq!(run(&body, Fault::Truncate(0)), (Vec::new(), Ending::Close));
        assert_eq!(
            run(&body, Fault::Truncate(50_000)),
            (body.clone(), Ending::Complete)
        );
        let (flipped, _) = run(&body, Fault::FlipByte(30_000));
        let differing: Vec<usize> = (0..body.len()).filter(|&i| body[i] != flipped[i]).collect();
        assert_eq!(differing, vec![30_000]);
        let stall = Fault::Stall {
            after_bytes: 17_000,
            duration: Duration::from_millis(10),
        };
        assert_eq!(run(&body, stall), (body.clone(), Ending::Complete));
    }
}
