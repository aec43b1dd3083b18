//! Events and stats with real workers and real faults: a panic, an abort, a segfault
//! retried, an exit, a timeout and cancels, through `submit` and through maps. The
//! story each task's events tell must hold together (started before finished, exactly
//! one finish, of the kind its caller got), each lost worker must be followed by its
//! replacement, and `stats()` read right after the last outcome must count exactly
//! what the callers received.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use procpool::{
    Event, ExitCause, ExitKind, Pool, PoolBuilder, Stats, TaskError, TaskErrorKind, TaskId,
    TaskOptions,
};
use procpool_worker::Fault;

procpool::test_support!();

/// Everything a pool told its listener, in the order heard.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<Event>>>);

impl Heard {
    /// A pool of `workers` that tells this.
    fn builder(&self, workers: usize) -> PoolBuilder {
        procpool_worker::link();
        let into = self.0.clone();
        Pool::builder()
            .workers(workers)
            .core_dumps(false)
            .on_event(move |event| into.lock().unwrap().push(event.clone()))
    }

    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until an event `matches` has been heard.
    fn wait_for(&self, matches: impl Fn(&Event) -> bool) {
        let heard = common::eventually(Duration::from_secs(10), || {
            self.0.lock().unwrap().iter().any(&matches)
        });
        assert!(heard, "no such event came");
    }
}

fn kind<T>(outcome: &Result<T, TaskError>) -> Option<TaskErrorKind> {
    outcome.as_ref().err().map(TaskError::kind)
}

/// What the callers got, counted by kind (`None`: an output).
fn tally<'a, T: 'a>(
    outcomes: impl IntoIterator<Item = &'a Result<T, TaskError>>,
) -> HashMap<Option<TaskErrorKind>, u64> {
    let mut counts = HashMap::new();
    for outcome in outcomes {
        *counts.entry(kind(outcome)).or_default() += 1;
    }
    counts
}

/// The stats count exactly what the callers got, and nothing is left queued or running.
fn assert_stats_match(stats: &Stats, got: &HashMap<Option<TaskErrorKind>, u64>) {
    assert_eq!(
        stats.finished.ok(),
        got.get(&None).copied().unwrap_or(0),
        "{stats:?}"
    );
    for kind in TaskErrorKind::ALL {
        let expected = got.get(&Some(kind)).copied().unwrap_or(0);
        assert_eq!(stats.finished.errors(kind), expected, "{kind}: {stats:?}");
    }
    assert_eq!(stats.finished.total(), got.values().sum::<u64>());
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
}

/// How one task's events ended.
#[derive(Debug, Default)]
struct Story {
    starts: Vec<u32>,
    retries: Vec<(u32, u32, TaskErrorKind)>,
    finish: Option<(Option<TaskErrorKind>, Option<u32>, Option<usize>)>,
}

/// Checks that each task's events hold together, and returns each task's story:
/// exactly one finish, nothing after it; a task that ran (an output or a breakdown)
/// was started first, and finished or retried on the worker it was last started on.
fn stories(events: &[Event]) -> HashMap<TaskId, Story> {
    let mut stories: HashMap<TaskId, Story> = HashMap::new();
    for event in events {
        match event {
            Event::TaskStarted { id, pid, .. } => {
                let story = stories.entry(*id).or_default();
                assert!(story.finish.is_none(), "{id} started after it finished");
                story.starts.push(*pid);
            }
            Event::TaskRetried {
                id,
                pid,
                attempt,
                error,
                ..
            } => {
                let story = stories.entry(*id).or_default();
                assert!(story.finish.is_none(), "{id} retried after it finished");
                assert_eq!(story.starts.last(), Some(pid), "{id} retried elsewhere");
                story.retries.push((*pid, *attempt, error.kind()));
            }
            Event::TaskFinished {
                id,
                pid,
                slot,
                outcome,
                ..
            } => {
                let story = stories.entry(*id).or_default();
                assert!(story.finish.is_none(), "{id} finished twice");
                let kind = outcome.as_ref().err().map(TaskError::kind);
                let ran = kind.is_none_or(TaskErrorKind::is_breakdown);
                if ran {
                    assert!(pid.is_some(), "{id} ran on no worker");
                    assert_eq!(story.starts.last(), pid.as_ref(), "{id} finished elsewhere");
                }
                story.finish = Some((kind, *pid, *slot));
            }
            _ => {}
        }
    }
    for (id, story) in &stories {
        assert!(story.finish.is_some(), "{id} never finished: {story:?}");
    }
    stories
}

/// Checks that each slot's workers come and go in turn: a worker exits after it
/// started, each worker lost is followed in its slot by a replacement's start, and
/// once the pool has been joined every worker has exited. Returns the exits.
fn worker_exits(events: &[Event]) -> Vec<(usize, u32, ExitCause)> {
    let mut current: HashMap<usize, u32> = HashMap::new();
    let mut awaiting_replacement: HashMap<usize, bool> = HashMap::new();
    let mut exits = Vec::new();
    for event in events {
        match event {
            Event::WorkerStarted { slot, pid, .. } => {
                assert!(
                    current.insert(*slot, *pid).is_none(),
                    "two workers in {slot}"
                );
                awaiting_replacement.insert(*slot, false);
            }
            Event::WorkerExited {
                slot, pid, cause, ..
            } => {
                assert_eq!(current.remove(slot), Some(*pid), "{pid} was not in {slot}");
                let lost = matches!(cause, ExitCause::Lost(e) if !e.is_pool_closed());
                awaiting_replacement.insert(*slot, lost);
                exits.push((*slot, *pid, cause.clone()));
            }
            Event::TaskStarted { slot, pid, .. } => {
                assert_eq!(
                    current.get(slot),
                    Some(pid),
                    "a task on no worker of {slot}"
                );
            }
            _ => {}
        }
    }
    assert!(current.is_empty(), "workers left running: {current:?}");
    // A slot whose worker was lost started another: the last exit of each slot is the
    // pool's closing, not a loss.
    assert!(
        awaiting_replacement.values().all(|waiting| !waiting),
        "a lost worker was not replaced"
    );
    exits
}

#[test]
fn submitted_faults_tell_their_story_and_are_counted_exactly() {
    let heard = Heard::default();
    let pool = heard.builder(2).build().unwrap();
    let once = TaskOptions::new().retries(1);
    let short = TaskOptions::new().timeout(Duration::from_millis(300));
    let handles = vec![
        pool.submit(Fault::Ok(1)).unwrap(),
        pool.submit(Fault::Panic("boom".into())).unwrap(),
        pool.submit(Fault::Fail).unwrap(),
        pool.submit(Fault::Abort).unwrap(),
        pool.submit_with(Fault::Segfault, &once).unwrap(),
        pool.submit(Fault::Exit(3)).unwrap(),
        pool.submit_with(Fault::Sleep(20_000), &short).unwrap(),
        pool.submit(Fault::Sleep(300)).unwrap(),
    ];
    let ids: Vec<TaskId> = handles.iter().map(|h| h.id()).collect();
    let outcomes: Vec<Result<u64, TaskError>> = handles.into_iter().map(|h| h.wait()).collect();
    // Read at once: every count is in before its outcome reaches the caller.
    let stats = pool.stats();
    let expected = [
        None,
        Some(TaskErrorKind::Panicked),
        Some(TaskErrorKind::Failed),
        Some(TaskErrorKind::Signaled),
        Some(TaskErrorKind::Signaled),
        Some(TaskErrorKind::Exited),
        Some(TaskErrorKind::TimedOut),
        None,
    ];
    assert_eq!(outcomes.iter().map(kind).collect::<Vec<_>>(), expected);
    assert_stats_match(&stats, &tally(&outcomes));
    assert_eq!(stats.retries, 1);
    let lost = |kind| stats.worker_exits.of(ExitKind::Lost(kind));
    // The abort, and the segfault twice.
    assert_eq!(lost(TaskErrorKind::Signaled), 3, "{stats:?}");
    assert_eq!(lost(TaskErrorKind::Exited), 1);
    assert_eq!(lost(TaskErrorKind::TimedOut), 1);
    assert_eq!(stats.worker_exits.lost(), 5);
    pool.join();

    let events = heard.events();
    let stories = stories(&events);
    for ((id, outcome), kind) in ids.iter().zip(&outcomes).zip(expected) {
        let story = &stories[id];
        assert_eq!(story.finish.as_ref().unwrap().0, kind, "{id}: {outcome:?}");
        assert!(!story.starts.is_empty(), "{id} never started");
    }
    // The segfault ran twice, on two workers, retried once in between.
    let segfault = &stories[&ids[4]];
    assert_eq!(segfault.starts.len(), 2);
    assert_ne!(segfault.starts[0], segfault.starts[1]);
    assert_eq!(
        segfault.retries,
        [(segfault.starts[0], 1, TaskErrorKind::Signaled)]
    );
    // Each breakdown that cost a worker: that worker's exit names it.
    let exits = worker_exits(&events);
    for index in [3, 4, 5, 6] {
        let (kind, pid, _) = stories[&ids[index]].finish.unwrap();
        let pid = pid.unwrap();
        let cause = exits.iter().find(|(_, p, _)| *p == pid).unwrap();
        assert_eq!(cause.2.kind(), ExitKind::Lost(kind.unwrap()), "{cause:?}");
    }
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::WorkerStarted { .. }))
        .count();
    assert_eq!(started, exits.len());
    assert_eq!(started, 2 + 5, "two workers, and one for each lost");
}

#[test]
fn a_map_s_faults_tell_their_story_task_by_task_and_are_counted_exactly() {
    let heard = Heard::default();
    let pool = heard.builder(2).build().unwrap();
    let fault = |i: u64| match i {
        40 => Fault::Panic(format!("input {i}")),
        100 => Fault::Fail,
        170 => Fault::Abort,
        230 => Fault::Segfault,
        _ => Fault::Ok(i),
    };
    let once = TaskOptions::new().retries(1);
    let outcomes: Vec<(usize, Result<u64, TaskError>)> = pool
        .map_unordered_with((0..300).map(fault), &once)
        .collect();
    let stats = pool.stats();
    assert_eq!(outcomes.len(), 300);
    assert_stats_match(&stats, &tally(outcomes.iter().map(|(_, o)| o)));
    assert_eq!(stats.finished.ok(), 296);
    assert_eq!(stats.finished.breakdowns(), 3, "{stats:?}");
    // The abort and the segfault, each once.
    assert_eq!(stats.retries, 2);
    pool.join();

    let events = heard.events();
    let stories = stories(&events);
    assert_eq!(stories.len(), 300, "one story per input");
    let map = match stories.keys().next() {
        Some(TaskId::Mapped { map, .. }) => *map,
        other => panic!("not a map's task: {other:?}"),
    };
    for (index, outcome) in &outcomes {
        let id = TaskId::Mapped { map, index: *index };
        let story = &stories[&id];
        assert_eq!(story.finish.as_ref().unwrap().0, kind(outcome), "{id}");
        assert!(!story.starts.is_empty(), "{id} never started");
    }
    for crashed in [170, 230] {
        let story = &stories[&TaskId::Mapped {
            map,
            index: crashed,
        }];
        assert_eq!(story.retries.len(), 1, "{story:?}");
        assert_eq!(story.retries[0].1, 1);
        // Ran twice, on two workers; its batch may have been taken up by a third
        // before (the worker lost to the other crash, with no blame on this task).
        let runs = &story.starts[story.starts.len() - 2..];
        assert_eq!(story.retries[0].0, runs[0], "{story:?}");
        assert_ne!(runs[0], runs[1]);
    }
    let exits = worker_exits(&events);
    let lost = exits
        .iter()
        .filter(|(_, _, cause)| cause.kind() == ExitKind::Lost(TaskErrorKind::Signaled))
        .count();
    assert_eq!(lost, 4, "{exits:?}");
}

#[test]
fn cancels_are_counted_as_their_callers_see_them() {
    let heard = Heard::default();
    let pool = heard.builder(1).build().unwrap();
    let busy = pool.submit(Fault::Sleep(300)).unwrap();
    let queued = pool.submit(Fault::Ok(1)).unwrap();
    assert!(queued.cancel());
    let queued_id = queued.id();
    assert_eq!(queued.wait(), Err(TaskError::Cancelled));
    // Counted as it was cancelled, not when a slot comes across it in the queue.
    let stats = pool.stats();
    assert_eq!(
        stats.finished.errors(TaskErrorKind::Cancelled),
        1,
        "{stats:?}"
    );
    assert_eq!(busy.wait(), Ok(300));

    let hang = pool.submit(Fault::Hang).unwrap();
    let hang_id = hang.id();
    heard.wait_for(|e| matches!(e, Event::TaskStarted { id, .. } if *id == hang_id));
    assert!(hang.cancel());
    assert_eq!(hang.wait(), Err(TaskError::Cancelled));
    let stats = pool.stats();
    assert_eq!(stats.finished.errors(TaskErrorKind::Cancelled), 2);
    assert_eq!(stats.finished.ok(), 1);
    assert_eq!(
        stats
            .worker_exits
            .of(ExitKind::Lost(TaskErrorKind::Cancelled)),
        1
    );
    assert_eq!((stats.queued, stats.running), (0, 0));
    pool.join();

    let events = heard.events();
    let stories = stories(&events);
    // Settled in the caller's thread, before any worker had it.
    let queued = &stories[&queued_id];
    assert!(queued.starts.is_empty());
    assert_eq!(
        queued.finish,
        Some((Some(TaskErrorKind::Cancelled), None, None))
    );
    let hang = &stories[&hang_id];
    assert_eq!(hang.finish.unwrap().0, Some(TaskErrorKind::Cancelled));
    worker_exits(&events);
}

#[test]
fn a_dropped_map_leaves_nothing_counted_queued_or_running() {
    let pool = Heard::default().builder(2).build().unwrap();
    let mut map = pool.map((0..10_000).map(|_| Fault::Sleep(2)));
    for _ in 0..5 {
        assert_eq!(map.next(), Some(Ok(2)));
    }
    drop(map);
    let settled = common::eventually(Duration::from_secs(20), || {
        let stats = pool.stats();
        stats.queued + stats.running == 0
    });
    let stats = pool.stats();
    assert!(settled, "{stats:?}");
    assert!(stats.finished.ok() >= 5);
    assert!(
        stats.finished.errors(TaskErrorKind::Cancelled) > 0,
        "{stats:?}"
    );
}

#[test]
fn a_listener_that_panics_loses_its_event_not_the_pool() {
    procpool_worker::link();
    let pool = Pool::builder()
        .workers(1)
        .on_event(|event| {
            if let Event::TaskStarted { .. } = event {
                panic!("a listener panics on purpose");
            }
        })
        .build()
        .unwrap();
    assert_eq!(pool.submit(Fault::Ok(4)).unwrap().wait(), Ok(4));
    let sum: u64 = pool.map((0..50).map(Fault::Ok)).map(Result::unwrap).sum();
    assert_eq!(sum, 49 * 50 / 2);
    assert_eq!(pool.stats().finished.ok(), 51);
}

/// Outcomes taken as futures, from a stream and from `as_completed` are counted and
/// told as their callers get them: an output that does not decode as a codec error,
/// types refused at submit, a future dropped after its outcome came (it cancels
/// nothing) and one dropped before (it cancels its task).
#[cfg(feature = "async")]
#[test]
fn async_outcomes_are_counted_and_told_as_their_callers_get_them() {
    use std::future::IntoFuture;

    use futures::StreamExt;
    use procpool_worker::{BadOutput, Double};

    let heard = Heard::default();
    let pool = heard.builder(2).build().unwrap();
    let mut expected: HashMap<TaskId, Option<TaskErrorKind>> = HashMap::new();
    futures::executor::block_on(async {
        let done = pool.submit_async(Fault::Ok(1)).await.unwrap();
        expected.insert(done.id(), None);
        let done = done.into_future();
        assert!(common::eventually(Duration::from_secs(10), || done.is_finished()));
        drop(done);

        let hang = pool.submit_async(Fault::Hang).await.unwrap();
        let hang_id = hang.id();
        expected.insert(hang_id, Some(TaskErrorKind::Cancelled));
        heard.wait_for(|e| matches!(e, Event::TaskStarted { id, .. } if *id == hang_id));
        drop(hang.into_future());

        let bad = pool.submit_async(BadOutput::FailOnDecode).await.unwrap();
        expected.insert(bad.id(), Some(TaskErrorKind::Codec));
        assert!(bad.await.unwrap_err().is_codec());
        let wrong = pool.submit_async(Double(-3i32)).await.unwrap();
        expected.insert(wrong.id(), Some(TaskErrorKind::WrongTypes));
        assert_eq!(wrong.await.unwrap_err().kind(), TaskErrorKind::WrongTypes);

        let faulty = |i: u64| match i {
            7 => Fault::Panic("seven".into()),
            _ => Fault::Ok(i),
        };
        let outcomes: Vec<_> = pool
            .map_unordered((0..50).map(faulty))
            .into_stream()
            .collect()
            .await;
        assert_eq!(outcomes.len(), 50);
        for (index, outcome) in &outcomes {
            assert_eq!(kind(outcome).is_some(), *index == 7, "{index}: {outcome:?}");
        }
    });
    // One that cannot be encoded has its outcome before it is watched.
    let mixed = [
        pool.submit(Fault::Sleep(300)).unwrap(),
        pool.submit(Unencodable).unwrap(),
    ];
    let ids: Vec<TaskId> = mixed.iter().map(|h| h.id()).collect();
    let mut order = Vec::new();
    for (index, outcome) in procpool::as_completed(mixed) {
        let want = (index == 1).then_some(TaskErrorKind::Codec);
        assert_eq!(kind(&outcome), want, "{outcome:?}");
        expected.insert(ids[index], want);
        order.push(index);
    }
    assert_eq!(order, [1, 0]);
    let undecodable = pool.submit(BadOutput::FailOnDecode).unwrap();
    expected.insert(undecodable.id(), Some(TaskErrorKind::Codec));
    let (_, outcome) = procpool::as_completed([undecodable]).next().unwrap();
    assert!(outcome.unwrap_err().is_codec());

    let settled = common::eventually(Duration::from_secs(10), || {
        let stats = pool.stats();
        stats.queued + stats.running == 0
    });
    let stats = pool.stats();
    assert!(settled, "{stats:?}");
    assert_eq!(stats.finished.ok(), 1 + 49 + 1, "{stats:?}");
    assert_eq!(
        stats.finished.errors(TaskErrorKind::Panicked),
        1,
        "{stats:?}"
    );
    assert_eq!(
        stats.finished.errors(TaskErrorKind::Cancelled),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.finished.errors(TaskErrorKind::Codec), 3, "{stats:?}");
    assert_eq!(
        stats.finished.errors(TaskErrorKind::WrongTypes),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.finished.total(), 57, "{stats:?}");
    pool.join();

    let stories = stories(&heard.events());
    assert_eq!(stories.len(), 57, "one story per task");
    for (id, kind) in expected {
        let story = &stories[&id];
        let (told, _, _) = story.finish.unwrap();
        // An output its caller cannot decode was told as the worker gave it.
        let decoded_here = kind == Some(TaskErrorKind::Codec) && !story.starts.is_empty();
        let kind = kind.filter(|_| !decoded_here);
        assert_eq!(told, kind, "{id}");
    }
}

/// A task whose `Serialize` fails (with an error, not a panic): it has its outcome,
/// `Codec`, from `submit` on.
#[cfg(feature = "async")]
#[derive(Debug, serde::Deserialize)]
struct Unencodable;

#[cfg(feature = "async")]
impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unencodable refuses to encode"))
    }
}

#[cfg(feature = "async")]
impl procpool::Task for Unencodable {
    const NAME: &'static str = "events::Unencodable";
    type Output = u64;
    fn run(self) -> Result<u64, procpool::BoxError> {
        Ok(0)
    }
}

/// `terminate` ends running tasks, tasks queued, sent ahead to a busy worker or taken
/// back from one: each is told finished once, `PoolClosed`, as its caller gets it.
#[test]
fn terminate_tells_one_finish_for_every_task_it_ends() {
    let heard = Heard::default();
    let pool = heard.builder(2).build().unwrap();
    let mut handles: Vec<_> = (0..2).map(|_| pool.submit(Fault::Hang).unwrap()).collect();
    handles.extend((0..30).map(|i| pool.submit(Fault::Ok(i)).unwrap()));
    let ids: Vec<TaskId> = handles.iter().map(|h| h.id()).collect();
    for hang in &ids[..2] {
        heard.wait_for(|e| matches!(e, Event::TaskStarted { id, .. } if id == hang));
    }
    // Long enough for the quick tasks sent ahead to be taken back from the hung workers.
    std::thread::sleep(Duration::from_millis(200));
    pool.terminate();
    for handle in handles {
        assert_eq!(handle.wait(), Err(TaskError::PoolClosed));
    }
    let events = heard.events();
    let stories = stories(&events);
    for id in &ids {
        let finish = stories.get(id).and_then(|s| s.finish);
        assert_eq!(
            finish.map(|(kind, _, _)| kind),
            Some(Some(TaskErrorKind::PoolClosed)),
            "{id}"
        );
    }
    assert_eq!(stories.len(), ids.len());
    worker_exits(&events);
}

/// A pool terminated while its workers start (dropped right after it was built, say)
/// stopped them: their exit is the pool's closing, not a failed start (which the
/// `tracing` feature reports as a warning), whether a task was waiting or not.
#[test]
fn workers_stopped_while_starting_exit_as_the_pool_closes_not_as_failed_starts() {
    // Never ready: each worker is starting for as long as the test needs.
    let silent = common::script("silent-worker", "exec sleep 30\n");
    for with_task in [false, true] {
        let heard = Heard::default();
        let pool = heard
            .builder(2)
            .launch(procpool::Launch::Binary(silent.clone()))
            .build()
            .unwrap();
        // One slot greets its worker with the task sent behind its set-up, the other
        // waits for its worker's `Ready`.
        let task = with_task.then(|| pool.submit(Fault::Ok(1)).unwrap());
        let started = common::eventually(Duration::from_secs(10), || {
            let events = heard.events();
            let count = |e: &&Event| matches!(e, Event::WorkerStarted { .. });
            events.iter().filter(count).count() == 2
        });
        assert!(started, "{:?}", heard.events());
        std::thread::sleep(Duration::from_millis(50));
        pool.terminate();
        if let Some(task) = task {
            assert_eq!(task.wait(), Err(TaskError::PoolClosed));
        }
        let exits = worker_exits(&heard.events());
        assert_eq!(exits.len(), 2);
        for (_, _, cause) in exits {
            assert_eq!(cause, ExitCause::PoolClosed, "task waiting: {with_task}");
        }
    }
}

/// An input iterator that panics mid-way takes the map down with it, not the pool: no
/// in-flight place is kept, and what the map had sent is counted to the end.
#[test]
fn a_map_whose_input_panics_keeps_no_place_and_counts_what_it_sent() {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    let pool = Heard::default()
        .builder(2)
        .max_in_flight(2)
        .build()
        .unwrap();
    let inputs = (0..100u64).map(|i| {
        assert!(i != 40, "input {i} cannot be made");
        Fault::Sleep(i % 3)
    });
    let mut yielded = 0;
    let mapped = catch_unwind(AssertUnwindSafe(|| {
        for outcome in pool.map(inputs) {
            assert!(outcome.is_ok());
            yielded += 1;
        }
    }));
    assert!(
        mapped.is_err(),
        "the input's panic did not reach the caller"
    );
    assert!(yielded < 40);
    let settled = common::eventually(Duration::from_secs(10), || {
        let stats = pool.stats();
        stats.queued + stats.running == 0
    });
    let stats = pool.stats();
    assert!(settled, "{stats:?}");
    // Each input sent before the panic has its outcome; those of the batch being
    // filled when the input panicked were never sent (the panic ends the map).
    let finished = stats.finished.total();
    assert!(
        (yielded as u64..=40).contains(&finished),
        "{finished} finished, {yielded} yielded: {stats:?}"
    );
    // Both places are free.
    let both = [
        pool.try_submit(Fault::Ok(1)).unwrap(),
        pool.try_submit(Fault::Ok(2)).unwrap(),
    ];
    for (handle, n) in both.into_iter().zip(1..) {
        assert_eq!(handle.wait(), Ok(n));
    }
}
