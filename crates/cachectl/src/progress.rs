//! Progress of blob transfers, layer reads and archive imports (the
//! libraries' one vocabulary, [`ocidist::Progress`] events): bars on a
//! terminal (per blob, layer or file: bytes, rate, ETA; and an overall
//! line), one line per finished step otherwise, nothing with `-q`. Always
//! on stderr, so stdout keeps only results.

use crate::output::{human_bytes, short_digest};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocidist::{Phase, ProgressFn, Subject};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// How progress is shown.
#[derive(Clone)]
pub(crate) enum Progress {
    /// Not at all (`-q`).
    Off,
    /// A line per blob fetched, resumed or already there and per layer
    /// applied (stderr is not a terminal).
    Lines,
    /// Live bars (stderr is a terminal).
    Bars(Arc<Bars>),
}

/// The live bars. Nothing is drawn until the first transfer or step:
/// a command that moves no bytes leaves the terminal as it was.
pub(crate) struct Bars {
    multi: MultiProgress,
    shown: Mutex<Shown>,
}

/// The bars on screen now.
#[derive(Default)]
struct Shown {
    /// The total line, made with the first blob, layer or file bar.
    overall: Option<ProgressBar>,
    /// A bar per blob, layer or file, by its label, with the bytes it
    /// has added to `overall`.
    blobs: HashMap<String, (ProgressBar, u64)>,
}

impl Progress {
    /// The progress for this run: off when `quiet`, bars when stderr is a
    /// terminal, lines otherwise.
    pub(crate) fn new(quiet: bool) -> Progress {
        if quiet {
            return Progress::Off;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        Progress::Bars(Arc::new(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            shown: Mutex::new(Shown::default()),
        }))
    }

    /// The callback to give the registry client, the store's imports and
    /// `rootfs` (unpack, build), if progress is shown: on a terminal, a bar
    /// per blob, layer or archive file; otherwise a line per blob
    /// fetched, resumed or already there and per layer applied.
    pub(crate) fn callback(&self) -> Option<ProgressFn> {
        match self {
            Progress::Off => None,
            Progress::Lines => Some(ProgressFn::new(line)),
            Progress::Bars(bars) => {
                let bars = Arc::clone(bars);
                Some(ProgressFn::new(move |event: &ocidist::Progress| {
                    bars.update(event)
                }))
            }
        }
    }

    /// Shows a step without a byte count (unpacking, building): a spinner
    /// with the elapsed time on a terminal, a line otherwise. The spinner
    /// goes when the returned [`Step`] is dropped.
    pub(crate) fn step(&self, message: String) -> Step {
        match self {
            Progress::Off => Step(None),
            Progress::Lines => {
                eprintln!("{message}");
                Step(None)
            }
            Progress::Bars(bars) => {
                let spinner = bars.multi.add(ProgressBar::new_spinner());
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .expect("because the template is valid"),
                );
                spinner.set_message(message);
                spinner.enable_steady_tick(std::time::Duration::from_millis(120));
                Step(Some(spinner))
            }
        }
    }

    /// Clears the bars (before printing results); a later transfer starts
    /// a new total line.
    pub(crate) fn finish(&self) {
        if let Progress::Bars(bars) = self {
            let mut shown = bars.lock();
            if let Some(overall) = shown.overall.take() {
                overall.finish_and_clear();
            }
            for (_, (bar, _)) in shown.blobs.drain() {
                bar.finish_and_clear();
            }
            let _ = bars.multi.clear();
        }
    }
}

/// Prints the line `event` gets when stderr is not a terminal, if any.
fn line(event: &ocidist::Progress) {
    if let Some(line) = line_of(event) {
        eprintln!("{line}");
    }
}

/// The line for `event` when stderr is not a terminal: a blob fetched,
/// resumed or already there, a layer applied; none for other events (a
/// file read gets none, its step line says enough).
fn line_of(event: &ocidist::Progress) -> Option<String> {
    let (verb, digest) = match (&event.subject, event.phase) {
        (Subject::Blob(digest), Phase::Finished) => ("fetched", digest),
        (Subject::Blob(digest), Phase::Resumed) => ("resuming", digest),
        (Subject::Blob(digest), Phase::Skipped) => ("already there", digest),
        (Subject::Layer(digest), Phase::Finished) => ("applied layer", digest),
        _ => return None,
    };
    Some(format!(
        "{verb} {} ({})",
        short_digest(digest),
        human_bytes(event.total)
    ))
}

/// A step [`Progress::step`] shows, until dropped.
pub(crate) struct Step(Option<ProgressBar>);

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(spinner) = &self.0 {
            spinner.finish_and_clear();
        }
    }
}

impl Bars {
    fn update(&self, event: &ocidist::Progress) {
        let label = match &event.subject {
            Subject::Blob(digest) | Subject::Layer(digest) => short_digest(digest),
            Subject::File(file) => file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            _ => return,
        };
        let finished = matches!(event.phase, Phase::Finished | Phase::Skipped);
        self.show(label, event.done, event.total, finished);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shown> {
        self.shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the bar labelled `label` (made on its first event, with the
    /// total line when there is none) to `done` of `total`, and clears it
    /// once `finished`.
    fn show(&self, label: String, done: u64, total: u64, finished: bool) {
        let mut shown = self.lock();
        let Shown { overall, blobs } = &mut *shown;
        let overall = overall.get_or_insert_with(|| {
            let overall = self.multi.insert(0, ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("because the template is valid"),
            );
            overall.set_message("total");
            overall
        });
        let (bar, counted) = blobs.entry(label.clone()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("because the template is valid")
                .progress_chars("=> "),
            );
            bar.set_message(label);
            overall.inc_length(total);
            (bar, 0)
        });
        let done = done.min(total);
        if done > *counted {
            overall.inc(done - *counted);
            *counted = done;
        }
        bar.set_position(done);
        if finished {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ociref::Digest;

    fn event(subject: Subject, phase: Phase) -> ocidist::Progress {
        ocidist::Progress {
            subject,
            phase,
            done: 2048,
            total: 2048,
        }
    }

    #[test]
    fn lines_name_blobs_and_applied_layers_and_nothing_else() {
        let digest = Digest::sha256_of(b"blob");
        let short = short_digest(&digest);
        let blob = || Subject::Blob(digest.clone());
        let layer = || Subject::Layer(digest.clone());
        let cases = [
            (
                blob(),
                Phase::Finished,
                Some(format!("fetched {short} (2.0 KiB)")),
            ),
            (
                blob(),
                Phase::Resumed,
                Some(format!("resuming {short} (2.0 KiB)")),
            ),
            (
                blob(),
                Phase::Skipped,
                Some(format!("already there {short} (2.0 KiB)")),
            ),
            (
                layer(),
                Phase::Finished,
                Some(format!("applied layer {short} (2.0 KiB)")),
            ),
            (blob(), Phase::Started, None),
            (blob(), Phase::Bytes, None),
            (layer(), Phase::Bytes, None),
            (Subject::File("/tmp/a.tar".into()), Phase::Bytes, None),
            (Subject::File("/tmp/a.tar".into()), Phase::Finished, None),
        ];
        for (subject, phase, expected) in cases {
            let event = event(subject, phase);
            assert_eq!(line_of(&event), expected, "{event:?}");
        }
    }
}
