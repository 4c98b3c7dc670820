//! Progress of blob transfers: bars on a terminal (per blob: bytes, rate,
//! ETA; and an overall line), one line per finished step otherwise,
//! nothing with `-q`. Always on stderr, so stdout keeps only results.

use crate::output::{human_bytes, short_digest};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocidist::{ProgressFn, ProgressKind};
use rootfs::LayerProgress;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// How progress is shown.
#[derive(Clone)]
pub(crate) enum Progress {
    /// Not at all (`-q`).
    Off,
    /// A line per finished, resumed or skipped blob (stderr is not a
    /// terminal).
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

    /// The callback to give the registry client, if progress is shown.
    pub(crate) fn callback(&self) -> Option<ProgressFn> {
        match self {
            Progress::Off => None,
            Progress::Lines => Some(Arc::new(|event: &ocidist::Progress| {
                let verb = match event.kind {
                    ProgressKind::Finished => "fetched",
                    ProgressKind::Resumed => "resuming",
                    ProgressKind::Skipped => "already there",
                    _ => return,
                };
                eprintln!(
                    "{verb} {} ({})",
                    short_digest(&event.digest),
                    human_bytes(event.total)
                );
            })),
            Progress::Bars(bars) => {
                let bars = Arc::clone(bars);
                Some(Arc::new(move |event: &ocidist::Progress| {
                    bars.update(event)
                }))
            }
        }
    }

    /// The callback to give `rootfs` (unpack, build), if progress is
    /// shown: a bar per layer read, or a line per layer applied.
    pub(crate) fn layer_callback(&self) -> Option<rootfs::ProgressFn> {
        match self {
            Progress::Off => None,
            Progress::Lines => Some(rootfs::ProgressFn::new(|event: &LayerProgress| {
                if event.done == event.total {
                    eprintln!(
                        "applied layer {} ({})",
                        short_digest(&event.layer),
                        human_bytes(event.total)
                    );
                }
            })),
            Progress::Bars(bars) => {
                let bars = Arc::clone(bars);
                Some(rootfs::ProgressFn::new(move |event: &LayerProgress| {
                    bars.show(
                        short_digest(&event.layer),
                        event.done,
                        event.total,
                        event.done == event.total,
                    );
                }))
            }
        }
    }

    /// The callback to give an import of `file`, if progress is shown: a
    /// bar of the archive read (nothing more than the step line otherwise).
    pub(crate) fn file_callback(&self, file: &std::path::Path) -> Option<ocistore::ReadProgressFn> {
        let Progress::Bars(bars) = self else {
            return None;
        };
        let bars = Arc::clone(bars);
        let label = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Some(ocistore::ReadProgressFn::new(move |done, total| {
            bars.show(label.clone(), done, total, done >= total);
        }))
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
        let finished = matches!(event.kind, ProgressKind::Finished | ProgressKind::Skipped);
        self.show(
            short_digest(&event.digest),
            event.done,
            event.total,
            finished,
        );
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
