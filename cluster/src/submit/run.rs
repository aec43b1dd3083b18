//! [`Run`]: the submitter's side of a run, a batch of tasks of one type on the server:
//! tasks go in, each task's first outcome comes out once, whoever ran it and however
//! often. A run has an id: a submitter that stopped opens it again and collects every
//! outcome.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use procpool::{Direction, EncodedTask, Task, TaskOptions};

use super::outcome::{DeadLetter, Outcome};
use crate::agent::serve::{DEFAULT_MAX_DELIVERIES, DEFAULT_PATIENCE};
use crate::entry::{push_fields, OutcomeEntry, TaskEntry};
use crate::error::ClusterError;
use crate::keys::{self, ring, Keys, GROUP};
use crate::limit;
use crate::link::Link;
use crate::reply;

/// Tasks sent to the server in one round trip.
const SEND_BATCH: usize = 256;
/// Outcomes read in one round trip.
const READ_BATCH: usize = 512;
/// How long one read of outcomes blocks on the server.
const READ_BLOCK: Duration = Duration::from_millis(1000);
/// How long a collected run's keys stay, by default.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);

/// Settings of a [`Run`]; see [`Run::builder`].
#[derive(Debug)]
pub struct RunBuilder<T> {
    url: String,
    id: String,
    max_deliveries: u32,
    patience: Duration,
    expire_after: Duration,
    root_cert: Option<Vec<u8>>,
    task: PhantomData<fn() -> T>,
}

impl<T: Task> RunBuilder<T> {
    /// How many deliveries a task gets before it ends in `Poisoned` (each crash of its
    /// worker, each loss of its agent, counts one). Default 3; at least 1. Applies to a
    /// run being created; an existing run keeps its own.
    pub fn max_deliveries(mut self, cap: u32) -> Self {
        self.max_deliveries = cap.max(1);
        self
    }

    /// How long to keep reconnecting through a server outage. Default 60 s.
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// How long the run's keys stay on the server once every outcome is collected
    /// (another submitter may still re-attach and read them meanwhile). Default 1 h.
    pub fn expire_after(mut self, after: Duration) -> Self {
        self.expire_after = after.max(Duration::from_secs(1));
        self
    }

    /// For a `rediss://` server: trust this root certificate (PEM) rather than the
    /// system's roots.
    #[cfg(feature = "tls")]
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert = Some(pem.into());
        self
    }

    /// Creates the run, or re-attaches to it if it exists: tasks already submitted
    /// keep their numbers, and new ones are numbered after them.
    ///
    /// # Errors
    /// An invalid run id, a run made for another task type, or the server unreachable.
    pub fn open(self) -> Result<Run<T>, ClusterError> {
        self.connect(true)
    }

    /// Re-attaches to an existing run only.
    ///
    /// # Errors
    /// [`ClusterError::NoSuchRun`] if it is not on the server; as for
    /// [`open`](RunBuilder::open) otherwise.
    pub fn attach(self) -> Result<Run<T>, ClusterError> {
        self.connect(false)
    }

    fn connect(self, create: bool) -> Result<Run<T>, ClusterError> {
        if !keys::is_valid_run_id(&self.id) {
            return Err(ClusterError::InvalidRunId(self.id));
        }
        let mut link = Link::open(&self.url, self.patience, self.root_cert.as_deref())?;
        let keys = Keys::of(&self.id);
        let mut meta: HashMap<String, String> = link.run("reading the run", |c| {
            redis::cmd("HGETALL").arg(&keys.meta).query(c)
        })?;
        if !meta.contains_key("task") {
            if !create {
                return Err(ClusterError::NoSuchRun(self.id));
            }
            meta = link.run("creating the run", |c| {
                create_run::<T>(c, &keys, self.max_deliveries)
            })?;
        }
        let submitted = match meta.get("task") {
            Some(task) if task == T::NAME => match count(meta.get("submitted")) {
                Some(count) => count,
                None => {
                    return Err(ClusterError::Garbled {
                        run: self.id,
                        reason: format!("its count of tasks is {:?}", meta.get("submitted")),
                    })
                }
            },
            found => {
                return Err(ClusterError::OtherTask {
                    run: self.id,
                    found: found.cloned().unwrap_or_default(),
                    wanted: T::NAME.to_owned(),
                })
            }
        };
        let max_string = limit::max_string(&mut link);
        Ok(Run {
            max_string,
            link,
            keys,
            submitted,
            unsent: Vec::new(),
            seen: HashSet::new(),
            cursor: "0-0".to_owned(),
            expire_after: self.expire_after,
            garbage: Vec::new(),
            duplicates: 0,
            task: PhantomData,
        })
    }
}

/// The most tasks a run may count: far beyond any run, and far enough below `u64::MAX`
/// that numbering never overflows.
const MAX_COUNT: u64 = 1 << 62;

/// How sending a batch of tasks ended.
enum Sent {
    /// The batch is on the server.
    Done,
    /// The run is not on the server: nothing was sent.
    Gone,
    /// The run's count of tasks is not a count (this text): nothing was sent.
    Garbled(String),
}

/// The count of tasks a run's settings give, if it is one: the field is written by
/// submitters only, but read from the server, where anything may be.
fn count(field: Option<&String>) -> Option<u64> {
    field?.parse().ok().filter(|&count| count <= MAX_COUNT)
}

/// Creates the run of `keys` for tasks of `T` with at most `cap` deliveries each,
/// unless another submitter made it first, and returns its settings as they then are.
/// Whoever comes first sets them: nothing here overwrites a field, and a group made
/// meanwhile (`BUSYGROUP`) is the other submitter's, so two submitters opening one run
/// at once agree on its task type and its count. Safe to repeat.
fn create_run<T: Task>(
    connection: &mut redis::Connection,
    keys: &Keys,
    cap: u32,
) -> redis::RedisResult<HashMap<String, String>> {
    let replies: Vec<redis::Value> = redis::pipe()
        .atomic()
        .cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.tasks)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .cmd("HSETNX")
        .arg(&keys.meta)
        .arg("task")
        .arg(T::NAME)
        .ignore()
        .cmd("HSETNX")
        .arg(&keys.meta)
        .arg("cap")
        .arg(cap)
        .ignore()
        .cmd("HSETNX")
        .arg(&keys.meta)
        .arg("submitted")
        .arg(0)
        .ignore()
        .cmd("SADD")
        .arg(keys::RUNS)
        .arg(&keys.run)
        .ignore()
        .cmd("HGETALL")
        .arg(&keys.meta)
        .ignore_errors()
        .query(connection)?;
    let mut replies = replies.into_iter();
    match replies.next().map(redis::Value::extract_error) {
        Some(Err(error)) if error.code() != Some("BUSYGROUP") => return Err(error),
        _ => {}
    }
    redis::from_redis_value(
        replies
            .next()
            .unwrap_or(redis::Value::Nil)
            .extract_error()?,
    )
    .map_err(Into::into)
}

/// A run of tasks of type `T` on the server; see the [crate docs](crate).
pub struct Run<T> {
    link: Link,
    /// The most the server holds in a string: a task's input must fit.
    max_string: u64,
    keys: Keys,
    /// Tasks numbered so far (sent or not).
    submitted: u64,
    /// Tasks numbered and not yet sent.
    unsent: Vec<TaskEntry>,
    /// Tasks whose outcome was yielded.
    seen: HashSet<u64>,
    /// The last outcome entry read.
    cursor: String,
    expire_after: Duration,
    garbage: Vec<(String, String)>,
    duplicates: u64,
    task: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Run<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.keys.run)
            .field("submitted", &self.submitted)
            .field("collected", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl<T: Task> Run<T> {
    /// A run with the id `id` on the server at `url`.
    pub fn builder(url: impl Into<String>, id: impl Into<String>) -> RunBuilder<T> {
        RunBuilder {
            url: url.into(),
            id: id.into(),
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            patience: DEFAULT_PATIENCE,
            expire_after: DEFAULT_EXPIRY,
            root_cert: None,
            task: PhantomData,
        }
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        &self.keys.run
    }

    /// How many tasks the run has (those of earlier submitters of it included).
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Adds a task to the run and returns its number (from 0, in submission order; an
    /// outcome names its task by it). Tasks are sent in batches: [`flush`](Run::flush)
    /// sends at once, and collecting outcomes does first.
    ///
    /// # Errors
    /// The task could not be encoded (it holds shared memory, or its `Serialize`
    /// failed, or it is bigger than the server holds in a string), or the server
    /// stayed unreachable while a batch was sent.
    pub fn submit(&mut self, task: &T) -> Result<u64, ClusterError> {
        self.submit_with(task, &TaskOptions::new())
    }

    /// Like [`submit`](Run::submit), with the task's timeout from `options` (its
    /// `timeout` or `no_timeout`) in place of the task's own and the agent pool's.
    /// Retries do not apply here: a crash is a delivery, up to the run's
    /// [`max_deliveries`](RunBuilder::max_deliveries).
    ///
    /// # Errors
    /// As for [`submit`](Run::submit).
    pub fn submit_with(&mut self, task: &T, options: &TaskOptions) -> Result<u64, ClusterError> {
        let task = EncodedTask::encode(task).map_err(ClusterError::Encode)?;
        // One the server cannot hold would fail its whole batch, at every flush.
        limit::check(
            "the task's input",
            task.input().len(),
            self.max_string,
            Direction::ToWorker,
        )
        .map_err(ClusterError::Encode)?;
        let seq = self.submitted + self.unsent.len() as u64;
        self.unsent.push(TaskEntry {
            seq,
            task,
            timeout: options.timeout_setting(),
        });
        if self.unsent.len() >= SEND_BATCH {
            self.flush()?;
        }
        Ok(seq)
    }

    /// Sends the tasks not sent yet, and rings the bell for idle agents.
    ///
    /// # Errors
    /// The server stayed unreachable past the patience, or
    /// [`ClusterError::NoSuchRun`]: the run is no longer on the server (its keys
    /// expired, or a server without persistence restarted), and the tasks are not
    /// sent, since nobody would serve them.
    pub fn flush(&mut self) -> Result<(), ClusterError> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let first = self.submitted;
        let end = first + self.unsent.len() as u64;
        let keys = &self.keys;
        let entries: Vec<_> = self.unsent.iter().map(TaskEntry::fields).collect();
        let mut tries = 0;
        let sent = self.link.run("sending tasks", |c| {
            tries += 1;
            // The run must still be there: tasks sent to a run the server lost would
            // make its keys again, never to expire, with nobody to serve them. And the
            // batch and the count go in one MULTI: on a second try, a count that says
            // the batch is in means the reply was lost, not the batch.
            let field: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&keys.meta)
                .arg("submitted")
                .query(c)?;
            // Read as text however it came: bytes that are not UTF-8 are no count.
            let field = field.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            match (count(field.as_ref()), field) {
                (_, None) => return Ok(Sent::Gone),
                (None, Some(garbage)) => return Ok(Sent::Garbled(garbage)),
                (Some(count), _) if tries > 1 && count >= end => return Ok(Sent::Done),
                (Some(_), _) => {}
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            for fields in &entries {
                pipe.cmd("XADD").arg(&keys.tasks).arg("*");
                push_fields(&mut pipe, fields);
                pipe.ignore();
            }
            pipe.cmd("HSET")
                .arg(&keys.meta)
                .arg("submitted")
                .arg(end)
                .ignore();
            // A run collected before (finished: its keys expiring, agents no longer
            // serving it) is live again with these tasks, until collected again.
            pipe.cmd("SADD").arg(keys::RUNS).arg(&keys.run).ignore();
            for key in keys.all() {
                pipe.cmd("PERSIST").arg(key).ignore();
            }
            pipe.add_command(ring(&keys.run)).ignore();
            pipe.query::<()>(c).map(|()| Sent::Done)
        })?;
        match sent {
            Sent::Done => {}
            Sent::Gone => return Err(ClusterError::NoSuchRun(keys.run.clone())),
            Sent::Garbled(field) => {
                return Err(ClusterError::Garbled {
                    run: keys.run.clone(),
                    reason: format!("its count of tasks is {field:?}"),
                })
            }
        }
        self.submitted = end;
        self.unsent.clear();
        Ok(())
    }

    /// The outcome of every task of the run not yet collected by this `Run`, as they
    /// come: each task's first outcome, once. Blocks while outcomes are missing; ends
    /// once every task submitted so far has one, or with
    /// [`ClusterError::NoSuchRun`] if the run leaves the server before (its keys
    /// expired once another submitter collected it, or a server without persistence
    /// restarted). Sends unsent tasks first.
    pub fn outcomes(&mut self) -> Outcomes<'_, T> {
        Outcomes {
            run: self,
            ready: Vec::new(),
            failed: false,
        }
    }

    /// Whether every task submitted has had its outcome collected.
    pub fn is_collected(&self) -> bool {
        self.unsent.is_empty() && self.seen.len() as u64 == self.submitted
    }

    /// Entries of the outcome stream that were not outcomes of this run's tasks (with
    /// their entry ids and what was wrong), set aside while collecting.
    pub fn garbage(&self) -> &[(String, String)] {
        &self.garbage
    }

    /// Outcomes read for tasks that already had one (a task run twice: its agent's
    /// lease ran out while it still ran), dropped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// The run's dead letters: tasks given up and entries that were not tasks.
    ///
    /// # Errors
    /// The server stayed unreachable past the patience.
    pub fn dead_letters(&mut self) -> Result<Vec<DeadLetter>, ClusterError> {
        let keys = &self.keys;
        let letters = self.link.run("reading the dead letters", |c| {
            redis::cmd("XRANGE")
                .arg(&keys.dead)
                .arg("-")
                .arg("+")
                .query::<redis::Value>(c)
                .and_then(reply::entries)
        })?;
        Ok(letters.iter().map(DeadLetter::from_entry).collect())
    }

    /// Marks the run collected: its keys expire after the run's expiry, and agents
    /// stop serving it. Done by [`outcomes`](Run::outcomes) once every outcome is in.
    /// Tasks submitted to the run later make it live again, until collected again.
    ///
    /// # Errors
    /// The server stayed unreachable past the patience.
    pub fn finish(&mut self) -> Result<(), ClusterError> {
        let keys = &self.keys;
        let seconds = self.expire_after.as_secs();
        self.link.run("expiring the run", |c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("SREM").arg(keys::RUNS).arg(&keys.run).ignore();
            for key in keys.all() {
                pipe.cmd("EXPIRE").arg(key).arg(seconds).ignore();
            }
            pipe.query::<()>(c)
        })
    }

    /// Reads the next outcomes; those of tasks not yet seen go to `ready`.
    ///
    /// # Errors
    /// [`ClusterError::NoSuchRun`] when none came and the run is no longer on the
    /// server (its keys expired, or the server lost them): none ever will.
    fn read(&mut self, ready: &mut Vec<Outcome<T::Output>>) -> Result<(), ClusterError> {
        let keys = &self.keys;
        let cursor = self.cursor.clone();
        let reply = self
            .link
            .run_blocking("reading outcomes", READ_BLOCK, |c| {
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(READ_BATCH)
                    .arg("BLOCK")
                    .arg(READ_BLOCK.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(&keys.outcomes)
                    .arg(&cursor)
                    .query::<redis::Value>(c)
                    .and_then(reply::read)
            })?;
        let streams = reply.map(|r| r.keys).unwrap_or_default();
        if streams.iter().all(|stream| stream.ids.is_empty()) {
            let exists: bool = self.link.run("checking the run", |c| {
                redis::cmd("HEXISTS").arg(&keys.meta).arg("task").query(c)
            })?;
            if !exists {
                return Err(ClusterError::NoSuchRun(keys.run.clone()));
            }
        }
        for stream in streams {
            for entry in stream.ids {
                self.cursor = entry.id.clone();
                match OutcomeEntry::parse(&entry.map) {
                    Err(malformed) => self.garbage.push((entry.id, malformed.reason)),
                    Ok(outcome) if outcome.seq >= self.submitted => self.garbage.push((
                        entry.id,
                        format!("task {} was never submitted", outcome.seq),
                    )),
                    Ok(outcome) if !self.seen.insert(outcome.seq) => self.duplicates += 1,
                    Ok(outcome) => ready.push(Outcome {
                        seq: outcome.seq,
                        result: outcome
                            .outcome
                            .and_then(|bytes| procpool::decode_output::<T>(&bytes)),
                        node: outcome.node,
                        agent: outcome.agent,
                        attempts: outcome.attempts,
                    }),
                }
            }
        }
        Ok(())
    }
}

/// The outcomes of a [`Run`]; see [`Run::outcomes`].
pub struct Outcomes<'r, T: Task> {
    run: &'r mut Run<T>,
    ready: Vec<Outcome<T::Output>>,
    failed: bool,
}

impl<T: Task> fmt::Debug for Outcomes<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcomes").field("run", &self.run).finish()
    }
}

impl<T: Task> Iterator for Outcomes<'_, T> {
    type Item = Result<Outcome<T::Output>, ClusterError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Err(error) = self.run.flush() {
            self.failed = true;
            return Some(Err(error));
        }
        loop {
            if let Some(outcome) = self.ready.pop() {
                return Some(Ok(outcome));
            }
            if self.run.is_collected() {
                if let Err(error) = self.run.finish() {
                    self.failed = true;
                    return Some(Err(error));
                }
                return None;
            }
            let mut ready = Vec::new();
            if let Err(error) = self.run.read(&mut ready) {
                self.failed = true;
                return Some(Err(error));
            }
            ready.reverse();
            self.ready = ready;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_read_from_the_server_is_a_number_that_numbering_cannot_overflow() {
        let count = |text: &str| count(Some(&text.to_owned()));
        assert_eq!(count("0"), Some(0));
        assert_eq!(count("4000"), Some(4000));
        assert_eq!(count(&MAX_COUNT.to_string()), Some(MAX_COUNT));
        for garbage in ["", "-1", "many", "1e3", &u64::MAX.to_string()] {
            assert_eq!(count(garbage), None, "{garbage:?}");
        }
        assert_eq!(super::count(None), None);
    }
}
