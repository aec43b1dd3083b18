//! [`Progress`]: a map that draws its progress as it goes, on a terminal bar
//! (indicatif): position and length, elapsed, rate, ETA, and the outcomes by kind with
//! the workers replaced. It yields what the map yields, untouched.
//!
//! Counting an outcome is an addition; the bar itself is brought up to date when the
//! pacer says (`pacer.rs`). The bar's message holds the counts (`counts.rs`), so a bar
//! of the caller's own style shows them wherever its template puts `{msg}`.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::counts::Counts;
use super::pacer::Pacer;
use crate::error::{TaskError, TaskErrorKind};
use crate::pool::map::{Map, MapUnordered};
use crate::pool::stats::{Outcomes, Stats};
use crate::pool::telemetry::Telemetry;
use crate::pool::Pool;
use crate::task::Task;

/// The bar of a map whose length is known: position of length, rate, ETA; the counts
/// on a line of their own.
const BAR_TEMPLATE: &str = "{spinner:.green} {elapsed_precise} [{bar:32.cyan/blue}] \
     {human_pos}/{human_len} · {per_sec:1} · ETA {eta}\n  {msg}";
/// The bar of a map of unknown length: a spinner and a count.
const SPINNER_TEMPLATE: &str =
    "{spinner:.green} {elapsed_precise} {human_pos} done · {per_sec:1}\n  {msg}";
/// How often a bar of ours is drawn while no outcome comes (a hung task, a slow
/// batch), so its spinner turns and its clock runs.
const STEADY_TICK: Duration = Duration::from_millis(100);

/// The outcomes of a [`Map`] or a [`MapUnordered`], the same ones, with a progress bar
/// brought up to date as they come (feature `progress`): from
/// [`Map::progress`], [`progress_in`](Map::progress_in) or
/// [`progress_with`](Map::progress_with), and the same on [`MapUnordered`] (which
/// [`Pool::map_fn`] and [`Pool::map_fn_unordered`] return too).
///
/// The bar shows how many outcomes came of how many inputs (a spinner and a count when
/// the inputs' [`size_hint`](Iterator::size_hint) is not exact), the time elapsed, the
/// rate and the time left, and, as its message, the outcomes so far by kind and the
/// workers the pool lost to a task and replaced since the bar began:
///
/// ```text
/// ⠙ 00:00:03 [██████████████████░░░░░░░░░░░░░░] 146/240 · 48.6/s · ETA 2s
///   ok 139 · panicked 4 · signaled 2 · timed out 1 · workers replaced 3
/// ```
///
/// When the map ends, the bar finishes with those counts as its message (a bar of
/// [`progress_with`](Map::progress_with) whose length is more than its position is
/// left running, for the next map to go on with); dropped before, it is abandoned
/// where it stands, its message ending in `stopped`.
///
/// indicatif draws on stderr, and only when stderr is a terminal: elsewhere (a pipe, a
/// log, CI) the bar stays hidden, and the counts are still kept. Worker output that the
/// pool copies to stderr ([`OutputMode::Inherit`](crate::OutputMode::Inherit), the
/// default) is written past the bar and breaks it up: send it elsewhere
/// ([`PoolBuilder::stderr`](crate::PoolBuilder::stderr)) while a bar is up. Print your
/// own lines with [`ProgressBar::suspend`](https://docs.rs/indicatif/0.18/indicatif/struct.ProgressBar.html#method.suspend) on [`bar`](Progress::bar), or on the
/// [`MultiProgress`](https://docs.rs/indicatif/0.18/indicatif/struct.MultiProgress.html) given to `progress_in`.
///
/// Each outcome costs an addition; the clock is read about four times per refresh,
/// and the bar brought up to date 20 times a second and at each fault (at most once a
/// millisecond). Workers replaced are the pool's count, so another map or submit of
/// the same pool running meanwhile adds to it.
///
/// With the feature `async`, [`into_stream`](Progress::into_stream) makes it a stream,
/// as [`Map::into_stream`] does a map.
#[must_use = "a map is lazy: it pulls no input and runs nothing until it is iterated"]
pub struct Progress<M> {
    map: M,
    bar: ProgressBar,
    /// The outcomes yielded so far, by kind.
    outcomes: Outcomes,
    /// Outcomes yielded that the bar's position does not count yet.
    unshown: u64,
    pacer: Pacer,
    /// Where the pool's stats are read, for the workers replaced.
    telemetry: Arc<Telemetry>,
    /// The pool's stats when the bar began.
    start: Stats,
    /// The map has ended and the bar is finished.
    done: bool,
}

impl<M> Progress<M> {
    fn new(map: M, pool: &Pool, bar: ProgressBar) -> Progress<M> {
        let mut progress = Progress {
            map,
            bar,
            outcomes: Outcomes::default(),
            unshown: 0,
            pacer: Pacer::new(Instant::now()),
            telemetry: pool.telemetry().clone(),
            start: pool.stats(),
            done: false,
        };
        progress.refresh();
        progress
    }

    /// The bar: to print lines above it ([`ProgressBar::suspend`](https://docs.rs/indicatif/0.18/indicatif/struct.ProgressBar.html#method.suspend)), or read where it
    /// stands. Its position and message are brought up to date about 20 times a
    /// second, not at every outcome.
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    /// The outcomes yielded so far, by kind: exact at every outcome.
    pub fn outcomes(&self) -> Outcomes {
        self.outcomes
    }

    /// The outcomes as a stream, awaited without blocking a thread, with the same bar
    /// (feature `async`; see [`MapStream`](crate::MapStream)).
    #[cfg(feature = "async")]
    pub fn into_stream(self) -> crate::pool::stream::MapStream<Self> {
        crate::pool::stream::MapStream(self)
    }

    /// Books what the map gave: an outcome of kind `kind` (`None`: an output), or the
    /// end (`None`).
    fn saw(&mut self, outcome: Option<Option<TaskErrorKind>>) {
        let Some(kind) = outcome else {
            return self.finish();
        };
        self.outcomes.add(kind);
        self.unshown += 1;
        if self.pacer.tick(kind.is_some(), Instant::now) {
            self.refresh();
        }
    }

    fn counts(&self) -> Counts {
        Counts::new(self.outcomes, &self.start, &self.telemetry.stats())
    }

    /// Brings the bar's position and counts up to date.
    fn refresh(&mut self) {
        self.bar.inc(mem::take(&mut self.unshown));
        self.bar.set_message(self.counts().to_string());
    }

    /// The map has ended: the bar shows its last counts, and stops if its count is
    /// complete. A caller's bar that counts more than this map (several maps on one
    /// bar) goes on: finishing it would move it to its end.
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.bar.inc(mem::take(&mut self.unshown));
        let counts = self.counts().to_string();
        let complete = self
            .bar
            .length()
            .is_none_or(|len| self.bar.position() >= len);
        if complete {
            self.bar.finish_with_message(counts);
        } else {
            self.bar.set_message(counts);
        }
    }
}

/// Dropped before the map ended, the bar stops where it stands.
impl<M> Drop for Progress<M> {
    fn drop(&mut self) {
        if !self.done {
            self.bar.inc(mem::take(&mut self.unshown));
            self.bar
                .abandon_with_message(format!("{} · stopped", self.counts()));
        }
    }
}

/// A bar of ours on stderr, hidden unless stderr is a terminal: of length `len`, or a
/// spinner.
fn new_bar(len: Option<usize>) -> ProgressBar {
    let (bar, template) = match len {
        Some(len) => (ProgressBar::new(len as u64), BAR_TEMPLATE),
        None => (ProgressBar::no_length(), SPINNER_TEMPLATE),
    };
    // The templates are constants a test parses; the default style is never needed.
    let style =
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.with_style(style)
}

/// A bar of ours turns while no outcome comes, when it is drawn at all.
fn tick_steadily(bar: &ProgressBar) {
    if !bar.is_hidden() {
        bar.enable_steady_tick(STEADY_TICK);
    }
}

/// The inputs' length, if their `size_hint` knows it.
fn exact((low, high): (usize, Option<usize>)) -> Option<usize> {
    (Some(low) == high).then_some(low)
}

/// The kind of an outcome of `Map`, `None` for an output.
fn kind_of<T>(outcome: &Result<T, TaskError>) -> Option<TaskErrorKind> {
    outcome.as_ref().err().map(TaskError::kind)
}

/// The kind of an outcome of `MapUnordered`.
fn kind_of_indexed<T>((_, outcome): &(usize, Result<T, TaskError>)) -> Option<TaskErrorKind> {
    kind_of(outcome)
}

/// For one map type, whose items are `$item` (of kind `$kind`): `progress`,
/// `progress_in` and `progress_with` (`$example` shows the first), and the progress
/// bar's `Iterator` and `Stream` over it.
macro_rules! map_progress {
    ($map:ident, $item:ty, $kind:ident, $example:literal) => {
        impl<'p, I> $map<'p, I>
        where
            I: Iterator,
            I::Item: Task,
        {
            /// Draws a progress bar on stderr as the outcomes come: of as many tasks as
            /// there are inputs, a spinner if their `size_hint` is not exact (feature
            /// `progress`; see [`Progress`]). Yields the same outcomes.
            ///
            #[doc = $example]
            pub fn progress(self) -> Progress<Self> {
                let bar = new_bar(exact(self.size_hint()));
                tick_steadily(&bar);
                let pool = self.pool();
                Progress::new(self, pool, bar)
            }

            /// Like [`progress`](Self::progress), with the bar added to `bars`: one of
            /// several maps' bars, or a bar with lines printed above it
            /// ([`MultiProgress::suspend`](https://docs.rs/indicatif/0.18/indicatif/struct.MultiProgress.html#method.suspend)).
            pub fn progress_in(self, bars: &MultiProgress) -> Progress<Self> {
                let bar = bars.add(new_bar(exact(self.size_hint())));
                tick_steadily(&bar);
                let pool = self.pool();
                Progress::new(self, pool, bar)
            }

            /// Like [`progress`](Self::progress), on `bar`, styled and drawn as it is:
            /// its position goes up by one per outcome, its message is the counts
            /// (shown where its template has `{msg}`), and it gets the map's length if
            /// it has none and the inputs' `size_hint` is exact. It finishes when the
            /// map ends, if its position has reached its length by then: a bar for
            /// several maps goes on.
            pub fn progress_with(self, bar: ProgressBar) -> Progress<Self> {
                if let (None, Some(len)) = (bar.length(), exact(self.size_hint())) {
                    bar.set_length(len as u64);
                }
                let pool = self.pool();
                Progress::new(self, pool, bar)
            }
        }

        impl<I> Iterator for Progress<$map<'_, I>>
        where
            I: Iterator,
            I::Item: Task,
        {
            type Item = $item;

            fn next(&mut self) -> Option<Self::Item> {
                let outcome = self.map.next();
                self.saw(outcome.as_ref().map($kind));
                outcome
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                self.map.size_hint()
            }
        }

        #[cfg(feature = "async")]
        impl<I> futures_core::Stream for crate::pool::stream::MapStream<Progress<$map<'_, I>>>
        where
            I: Iterator,
            I::Item: Task,
        {
            type Item = $item;

            fn poll_next(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Self::Item>> {
                let progress = &mut self.get_mut().0;
                let outcome = std::task::ready!(progress.map.poll_outcome(cx.waker()));
                progress.saw(outcome.as_ref().map($kind));
                std::task::Poll::Ready(outcome)
            }
        }

        #[cfg(feature = "async")]
        impl<I> futures_core::FusedStream for crate::pool::stream::MapStream<Progress<$map<'_, I>>>
        where
            I: Iterator,
            I::Item: Task,
        {
            fn is_terminated(&self) -> bool {
                self.0.map.is_over()
            }
        }
    };
}

map_progress!(
    Map,
    Result<<I::Item as Task>::Output, TaskError>,
    kind_of,
    r#"```no_run
#[procpool::task]
fn word_count(text: String) -> usize {
    text.split_whitespace().count()
}

fn main() -> anyhow::Result<()> {
    procpool::init();
    let pool = procpool::Pool::new()?;
    let texts = (0..10_000).map(|i| format!("text number {i}"));
    let mut words = 0;
    for outcome in pool.map_fn(word_count, texts).progress() {
        words += outcome?;
    }
    assert_eq!(words, 30_000);
    Ok(())
}
```"#
);

map_progress!(
    MapUnordered,
    (usize, Result<<I::Item as Task>::Output, TaskError>),
    kind_of_indexed,
    r#"```no_run
# #[procpool::task]
# fn check(n: u64) -> anyhow::Result<()> { Ok(()) }
# fn main() -> anyhow::Result<()> {
# procpool::init();
# let pool = procpool::Pool::new()?;
let failed: Vec<usize> = pool
    .map_fn_unordered(check, 0..100_000)
    .progress()
    .filter_map(|(index, outcome)| outcome.is_err().then_some(index))
    .collect();
# Ok(()) }
```"#
);

impl<M: fmt::Debug> fmt::Debug for Progress<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("map", &self.map)
            .field("outcomes", &self.outcomes)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse() {
        for template in [BAR_TEMPLATE, SPINNER_TEMPLATE] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn only_an_exact_hint_is_a_length() {
        assert_eq!(exact((3, Some(3))), Some(3));
        assert_eq!(exact((0, Some(3))), None);
        assert_eq!(exact((3, None)), None);
    }

    #[test]
    fn a_bar_of_ours_is_hidden_off_a_terminal() {
        // Tests run with stderr captured or piped, never drawn on.
        let bar = new_bar(Some(5));
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            assert!(bar.is_hidden());
        }
        assert_eq!(bar.length(), Some(5));
        assert_eq!(new_bar(None).length(), None);
    }
}
