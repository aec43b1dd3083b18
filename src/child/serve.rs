//! The worker's main loop: runs inside the worker process, one task at a time.
//!
//! It reads a frame, runs the named task (panics caught), writes one response frame, and
//! repeats until the parent says `Shutdown` or goes away. A watchdog thread on the
//! parent-death lifeline kills the process group if the parent dies mid-task; a parent
//! that goes away while the worker waits for a frame is met the same way.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Instant;

use super::flush::Flush;
use super::{context, panics};
use crate::link::WorkerEnd;
use crate::sys;
use crate::task;
use crate::task::Fds;
use crate::wire::batch;
use crate::wire::exit_code;
use crate::wire::fds::{self, Incoming};
use crate::wire::frame::{self, Request, Response};
use crate::wire::journal::Journal;

pub(crate) fn serve(socket: OwnedFd, lifeline: Option<OwnedFd>) -> i32 {
    if let Some(lifeline) = lifeline {
        if let Err(e) = sys::watch_lifeline(lifeline) {
            eprintln!("procpool worker: cannot watch the parent lifeline: {e}");
            return exit_code::START;
        }
    }
    if let Err(e) = sys::kill_group_on_parent_death() {
        eprintln!("procpool worker: cannot arm the parent-death signal: {e}");
        return exit_code::START;
    }
    panics::install_hook();
    let mut link = match WorkerEnd::new(socket) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("procpool worker: cannot use its socket: {e}");
            return exit_code::START;
        }
    };
    // Frames read but not yet acted on. Before a task starts, every frame that has
    // arrived is read, so a `Skip` sent while the task waited here is seen in time.
    let mut inbox: VecDeque<Inbound> = VecDeque::new();
    let mut journal: Option<Journal> = None;
    loop {
        if inbox.is_empty() {
            let Some(frame) = link.recv() else {
                return link_ended(&link, None);
            };
            if let Err(code) = take_in(frame, &mut link, &mut inbox) {
                return code;
            }
        }
        loop {
            match link.try_recv() {
                Some(Some(frame)) => {
                    if let Err(code) = take_in(frame, &mut link, &mut inbox) {
                        return code;
                    }
                }
                Some(None) => break,
                // The parent let this worker go (`Shutdown`, then its end closed):
                // not a parent gone, unless it also died meanwhile.
                None if inbox.iter().any(|i| matches!(i.request, Request::Shutdown))
                    && !sys::parent_changed() =>
                {
                    return 0
                }
                None => return link_ended(&link, None),
            }
        }
        let Some(inbound) = inbox.pop_front() else {
            continue;
        };
        let Inbound {
            request,
            payload_len,
            mut frame,
            fds,
            skip,
        } = inbound;
        // Each job sent after the journal is counted as it is taken up; one the parent
        // has taken back for another worker is refused (see `wire::journal`).
        let (number, refused) = match (&request, &journal) {
            (Request::Run { .. } | Request::Batch { .. }, Some(journal)) => {
                let number = journal.take_up();
                (number, number.is_none())
            }
            _ => (None, false),
        };
        let sent = match request {
            Request::Setup {
                memory_limit,
                core_dumps,
                has_context,
                ..
            } => {
                if let Err(e) = setup(memory_limit, core_dumps) {
                    eprintln!("procpool worker: set-up failed: {e}");
                    return exit_code::START;
                }
                if has_context {
                    frame.truncate(payload_len);
                    context::set(frame);
                }
                link.send(&frame::header_only(&ready()))
            }
            Request::Run { id, .. } | Request::Batch { id, .. } if skip || refused => {
                link.send(&frame::header_only(&Response::Skipped { id }))
            }
            Request::Run {
                id, task, types, ..
            } => {
                let mut out = Vec::new();
                let input = &frame[..payload_len];
                let (header, shared) = match task::run(&task, types, input, fds, &mut out) {
                    Ok(shared) => {
                        let fds = shared.len() as u32;
                        (Response::Output { id, fds }, shared)
                    }
                    Err(failure) => {
                        out.clear();
                        (Response::Failure { id, failure }, Vec::new())
                    }
                };
                drop(frame);
                let _ = std::io::stdout().flush();
                link.send_with_fds(&frame::seal(out, &header), shared)
            }
            Request::Batch {
                id,
                task,
                types,
                count,
                ..
            } => {
                let items = &frame[..payload_len];
                let batch = (id, task.as_str(), types);
                let mut fds = Incoming::new(fds);
                match run_batch(
                    &mut link,
                    journal.as_mut(),
                    number,
                    batch,
                    (items, &mut fds),
                    count,
                    Instant::now,
                ) {
                    Ok(sent) => sent,
                    Err(code) => return code,
                }
            }
            Request::Journal => {
                let Some(fd) = fds.into_iter().next() else {
                    unreachable!("take_in gives a journal frame its descriptor")
                };
                match Journal::open(fd) {
                    Ok(opened) => journal = Some(opened),
                    Err(e) => {
                        eprintln!("procpool worker: cannot map the batch journal: {e}");
                        return exit_code::START;
                    }
                }
                Ok(())
            }
            // A parent that died right after its `Shutdown` leaves the group to us.
            Request::Shutdown if sys::parent_changed() => parent_gone(),
            Request::Shutdown => return 0,
            // Taken out of the stream as they arrive (see `take_in`).
            Request::Skip { .. } => Ok(()),
        };
        if let Err(e) = sent {
            return link_ended(&link, Some(&e));
        }
    }
}

/// This worker's answer to a `Setup`: it is ready, and speaks this protocol.
fn ready() -> Response {
    Response::Ready {
        protocol: frame::PROTOCOL,
        release: frame::RELEASE.to_owned(),
    }
}

/// The parent speaks `protocol`, not this worker's: the worker says so on stderr,
/// announces its own protocol in a `Ready` (the parent reads it and names both in its
/// error), and returns the exit code to end with, serving nothing.
fn other_protocol(link: &mut WorkerEnd, protocol: u32) -> i32 {
    eprintln!(
        "procpool worker: the pool speaks protocol {protocol}, this worker (procpool {}) \
         speaks protocol {}; build both from the same procpool version",
        frame::RELEASE,
        frame::PROTOCOL
    );
    let _ = link.send(&frame::header_only(&ready()));
    exit_code::START
}

/// The link ended without `Shutdown`. If it broke with the parent still there (out of
/// descriptors, say), the worker says why on stderr, where the parent's crash report
/// quotes it, and exits with `exit_code::PROTOCOL`. Otherwise the parent is gone.
fn link_ended(link: &WorkerEnd, send_error: Option<&std::io::Error>) -> i32 {
    let broken = link.broken().map(str::to_owned).or_else(|| {
        send_error
            .filter(|e| !crate::link::is_peer_gone(e))
            .map(|e| format!("cannot send to the parent: {e}"))
    });
    match broken {
        Some(why) => {
            eprintln!("procpool worker: the link to the parent failed: {why}");
            exit_code::PROTOCOL
        }
        None => parent_gone(),
    }
}

/// The parent closed the link without `Shutdown`: it died, or gave up on this worker.
/// The worker ends with its whole process group. An idle worker sees the closed link
/// before its parent-death signal or lifeline watchdog act; had it just exited, no one
/// would be left to kill what its tasks started in the background.
fn parent_gone() -> ! {
    sys::end_own_group()
}

/// A frame from the parent, decoded, waiting its turn.
struct Inbound {
    request: Request,
    payload_len: usize,
    frame: Vec<u8>,
    /// The descriptors that came with it.
    fds: Vec<OwnedFd>,
    /// A `Skip` for it came before it started.
    skip: bool,
}

/// Decodes a frame from the parent: a `Skip` marks the waiting task it names (one that
/// is not waiting has run already, and the `Skip` is dropped), anything else is queued
/// with the descriptors it brought (frames are taken in as they arrive, so in the
/// order their descriptors came). `Err` holds the exit code for a frame that cannot be
/// read.
fn take_in(frame: Vec<u8>, link: &mut WorkerEnd, inbox: &mut VecDeque<Inbound>) -> Result<(), i32> {
    match frame::decode::<Request>(&frame) {
        Ok((Request::Skip { id }, _)) => {
            let waiting = inbox.iter_mut().find(|i| {
                matches!(i.request, Request::Run { id: x, .. } | Request::Batch { id: x, .. } if x == id)
            });
            if let Some(waiting) = waiting {
                waiting.skip = true;
            }
            Ok(())
        }
        // A parent of another protocol is told at once, before any frame after its
        // `Setup` (which may not read as this version's) ends the worker otherwise.
        Ok((Request::Setup { protocol, .. }, _)) if protocol != frame::PROTOCOL => {
            Err(other_protocol(link, protocol))
        }
        Ok((request, payload_len)) => {
            let (count, most) = match request {
                Request::Run { fds, .. } => (fds as usize, fds::MAX_FDS),
                Request::Batch { fds, .. } => (fds as usize, fds::MAX_FRAME_FDS),
                Request::Journal => (1, 1),
                _ => (0, 0),
            };
            if count > most {
                eprintln!("procpool worker: a frame names {count} descriptors");
                return Err(exit_code::PROTOCOL);
            }
            let Some(fds) = link.take_fds(count) else {
                eprintln!("procpool worker: a frame came without its {count} descriptors");
                return Err(exit_code::PROTOCOL);
            };
            inbox.push_back(Inbound {
                request,
                payload_len,
                frame,
                fds,
                skip: false,
            });
            Ok(())
        }
        Err(e) => match frame::setup_protocol(&frame) {
            // A parent of another procpool version, whose `Setup` this one cannot read.
            Some(protocol) if protocol != frame::PROTOCOL => Err(other_protocol(link, protocol)),
            _ => {
                eprintln!("procpool worker: unreadable frame from the parent: {e}");
                Err(exit_code::PROTOCOL)
            }
        },
    }
}

/// Runs the `count` tasks of batch `id` in order (their shared buffers' descriptors in
/// `fds`), recording each outcome in the journal before the next task starts, and
/// answers with their records: in one response, or in several when the journal fills
/// up or the batch runs long (see [`super::flush`]), by `clock`. A batch taken up as
/// job `number` ends early if the parent cuts it (see `wire::journal`): its last
/// answer then covers the tasks before the cut. `Err` holds the exit code for a
/// malformed batch.
fn run_batch(
    link: &mut WorkerEnd,
    mut journal: Option<&mut Journal>,
    number: Option<u64>,
    (id, task, types): (u64, &str, u64),
    (items, fds): (&[u8], &mut Incoming),
    count: u32,
    clock: fn() -> Instant,
) -> Result<std::io::Result<()>, i32> {
    let runner = task::find(task, types);
    if let Some(journal) = journal.as_deref_mut() {
        journal.begin(id);
    }
    let started = clock();
    let mut flush = Flush::new(count, started);
    let mut out = Vec::new();
    // How many tasks have their records in `out`, not sent yet.
    let mut held = 0u32;
    // The record of the last task went out on its own, as the batch's final answer.
    let mut answered = false;
    let mut entries = batch::Entries::new(items);
    // Whether the parent has cut the batch before task `index` (see `wire::journal`).
    let cut_before = |journal: Option<&Journal>, index: u32| match (journal, number) {
        (Some(journal), Some(number)) => !journal.may_begin(number, index as usize),
        _ => false,
    };
    let mut cut = false;
    for index in 0..count {
        if cut_before(journal.as_deref(), index) {
            cut = true;
            break;
        }
        let Some(Some(item)) = entries.next() else {
            eprintln!("procpool worker: batch #{id} holds fewer than its {count} tasks");
            return Err(exit_code::PROTOCOL);
        };
        let record = batch::push_record(&mut out, |buf| match &runner {
            Ok(run) if fds.is_empty() => run(item, Fds::None, buf).map(drop),
            Ok(run) => run(item, Fds::Batch(fds), buf).map(drop),
            Err(failure) => Err(failure.clone()),
        });
        let done = index + 1;
        let recorded = match journal.as_deref_mut() {
            Some(journal) => journal.record(&out[record.clone()]),
            None => true,
        };
        if recorded {
            held += 1;
            // The batch runs long: what it has finished goes now (but for its last
            // task, whose record goes with the final answer just after), and the
            // journal starts over, as when it fills up.
            if done < count && flush.is_due(done, clock) {
                // Cut after this task: what it holds goes as the last answer.
                if cut_before(journal.as_deref(), done) {
                    cut = true;
                    break;
                }
                let part = partial(id, held, started, clock);
                if let Err(e) = link.send(&frame::seal(std::mem::take(&mut out), &part)) {
                    return Ok(Err(e));
                }
                held = 0;
                if let Some(journal) = journal.as_deref_mut() {
                    journal.sent_up_to(done as usize);
                }
                flush.sent(clock());
            }
            continue;
        }
        let Some(journal) = journal.as_deref_mut() else {
            unreachable!("only a journal refuses a record")
        };
        // The journal is full: send what it holds, then start it over with this record
        // (or, if even that does not fit, send the record at once as well).
        let current = out.split_off(record.start);
        if held > 0 {
            let part = partial(id, held, started, clock);
            if let Err(e) = link.send(&frame::seal(out, &part)) {
                return Ok(Err(e));
            }
            flush.sent(clock());
        }
        out = current;
        held = 1;
        journal.sent_up_to(index as usize);
        if !journal.record(&out) {
            let part = Response::Records {
                id,
                count: 1,
                last: index + 1 == count,
                nanos: elapsed_nanos(started, clock),
            };
            if let Err(e) = link.send(&frame::seal(std::mem::take(&mut out), &part)) {
                return Ok(Err(e));
            }
            held = 0;
            journal.sent_up_to(index as usize + 1);
            flush.sent(clock());
            answered = index + 1 == count;
        }
    }
    if !cut && entries.next().is_some() {
        eprintln!("procpool worker: batch #{id} holds more than its {count} tasks");
        return Err(exit_code::PROTOCOL);
    }
    let _ = std::io::stdout().flush();
    if answered {
        return Ok(Ok(()));
    }
    let last = Response::Records {
        id,
        count: held,
        last: true,
        nanos: elapsed_nanos(started, clock),
    };
    Ok(link.send(&frame::seal(out, &last)))
}

/// A partial answer to batch `id`, of `count` records, the batch having begun at
/// `started` by `clock`.
fn partial(id: u64, count: u32, started: Instant, clock: fn() -> Instant) -> Response {
    Response::Records {
        id,
        count,
        last: false,
        nanos: elapsed_nanos(started, clock),
    }
}

fn elapsed_nanos(since: Instant, clock: fn() -> Instant) -> u64 {
    let elapsed = clock().saturating_duration_since(since);
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

fn setup(memory_limit: Option<u64>, core_dumps: bool) -> std::io::Result<()> {
    if !core_dumps {
        sys::disable_core_dumps()?;
    }
    if let Some(limit) = memory_limit {
        sys::limit_memory(limit)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::ParentEnd;
    use crate::wire::codec;

    /// A batch frame that names more descriptors than a frame carries, or descriptors
    /// that did not come with it, is a protocol error: the worker exits (its parent
    /// sees a lost worker), never reads a task's shared buffer from another's.
    #[test]
    fn a_batch_whose_descriptors_do_not_add_up_is_refused() {
        let (mut parent, theirs) = ParentEnd::pair().unwrap();
        let mut link = WorkerEnd::new(theirs).unwrap();
        let batch = |fds: u32| {
            frame::header_only(&Request::Batch {
                id: 1,
                task: "no::Such".to_owned(),
                types: 0,
                count: 0,
                fds,
            })
        };
        let mut inbox = VecDeque::new();
        let too_many = fds::MAX_FRAME_FDS as u32 + 1;
        assert_eq!(
            take_in(batch(too_many), &mut link, &mut inbox),
            Err(exit_code::PROTOCOL)
        );
        assert_eq!(
            take_in(batch(2), &mut link, &mut inbox),
            Err(exit_code::PROTOCOL)
        );
        // Two that came with the frame are the batch's.
        let memory = sys::SharedMemory::create_sealed("serve-test", 4096).unwrap();
        parent
            .send_with_fds([&batch(2), &[]], &[memory.fd(), memory.fd()])
            .unwrap();
        let frame = link.recv().unwrap();
        assert_eq!(take_in(frame, &mut link, &mut inbox), Ok(()));
        assert_eq!(inbox.pop_front().map(|i| i.fds.len()), Some(2));
    }

    /// A batch whose payload does not hold `count` entries is a protocol error: the
    /// worker exits rather than guess which task is which.
    #[test]
    fn a_batch_with_the_wrong_number_of_tasks_is_refused() {
        let (_parent, theirs) = ParentEnd::pair().unwrap();
        let mut link = WorkerEnd::new(theirs).unwrap();
        let mut items = Vec::new();
        for n in 0..2u64 {
            batch::push_item(&mut items, |b| codec::encode_into(&n, b)).unwrap();
        }
        for count in [1, 3] {
            let ran = run_batch(
                &mut link,
                None,
                None,
                (9, "no::Such", 0),
                (&items, &mut Incoming::default()),
                count,
                Instant::now,
            );
            assert_eq!(ran.err(), Some(exit_code::PROTOCOL), "count {count}");
        }
        let ran = run_batch(
            &mut link,
            None,
            None,
            (9, "no::Such", 0),
            (&items, &mut Incoming::default()),
            2,
            Instant::now,
        );
        assert!(matches!(ran, Ok(Ok(()))), "two tasks, two entries");
    }

    thread_local! {
        /// Milliseconds the test clock has advanced, from its first reading.
        static TICKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        static BASE: Instant = Instant::now();
    }

    /// A clock that moves on 1 ms at each reading: every task of a batch seems to take
    /// that long.
    fn slow_clock() -> Instant {
        let ticks = TICKS.with(|t| t.replace(t.get() + 1));
        BASE.with(|base| *base + std::time::Duration::from_millis(ticks))
    }

    /// A batch that runs long answers in parts as it goes, and the journal starts over
    /// after each: a worker killed after a part leaves a journal that holds the rest.
    #[test]
    fn a_batch_that_runs_long_answers_in_parts() {
        let (mut parent, theirs) = ParentEnd::pair().unwrap();
        let mut link = WorkerEnd::new(theirs).unwrap();
        let watcher = Journal::create().unwrap();
        let fd = watcher.memory().fd().try_clone_to_owned().unwrap();
        let mut journal = Journal::open(fd).unwrap();
        let mut items = Vec::new();
        for n in 0..6u64 {
            batch::push_item(&mut items, |b| codec::encode_into(&n, b)).unwrap();
        }
        let ran = run_batch(
            &mut link,
            Some(&mut journal),
            None,
            (4, "no::Such", 0),
            (&items, &mut Incoming::default()),
            6,
            slow_clock,
        );
        assert!(matches!(ran, Ok(Ok(()))));
        let mut answers = Vec::new();
        while let Ok(frame) = parent.recv_timeout(std::time::Duration::ZERO) {
            let (response, len) = frame::decode::<Response>(&frame).unwrap();
            let Response::Records {
                id: 4, count, last, ..
            } = response
            else {
                panic!("{response:?}");
            };
            assert!(batch::records_are_well_formed(
                &frame[..len],
                count as usize
            ));
            answers.push((count, last));
        }
        // Each task seems to take 1 ms, and records go once 2 ms have passed since the
        // last answer; the last task's goes with the final answer.
        assert_eq!(answers, [(2, false), (2, false), (2, true)]);
        let recovered = watcher.recover(4, 6, 4).unwrap();
        assert_eq!(recovered.done, 6);
        assert!(batch::records_are_well_formed(&recovered.records, 2));
        assert_eq!(watcher.recover(4, 6, 2), None, "sent records are gone");
    }
}
