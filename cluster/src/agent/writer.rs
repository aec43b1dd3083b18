//! The agent's writer: a thread of its own, with its own connection, that writes each
//! delivery's outcome back (the outcome and the acknowledgement, or the release with
//! its reason, or the poisoning with its dead letter) in one `MULTI` with whatever else
//! is waiting, then frees the deliveries' places so the fetching loop may take more.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use procpool::{Direction, Side, TaskError};
use redis::{Connection, RedisResult};

use super::held::{Delivery, Held};
use super::lease;
use super::verdict::{self, Verdict};
use crate::entry::{self, push_fields, Fields, OutcomeEntry};
use crate::keys::{ring, Keys, GROUP};
use crate::limit;
use crate::link::Link;

/// How idle a released entry is made to look (about three years, in milliseconds), so
/// that every agent's reclaim takes it up at once however long its lease.
const RELEASED_IDLE_MS: u64 = 100_000_000_000;

/// What the writer is asked to write.
#[derive(Debug)]
pub(crate) enum Write {
    /// A delivery's outcome, from its local pool.
    Outcome {
        delivery: Delivery,
        outcome: Result<Vec<u8>, TaskError>,
        cap: u32,
    },
    /// A delivery given up before it ran: past its cap.
    Poisoned {
        delivery: Delivery,
        error: TaskError,
    },
    /// An entry of a run's task stream that is not a task.
    Malformed {
        keys: Arc<Keys>,
        entry: String,
        seq: Option<u64>,
        reason: String,
    },
}

/// Who writes: the agent's names, for the outcomes and the releases.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pub(crate) agent: String,
    pub(crate) node: String,
}

/// Most writes sent in one round trip.
const BATCH: usize = 256;

impl Writer {
    /// Writes until every sender is gone: whatever is waiting goes in one `MULTI`, so
    /// quick tasks cost one round trip per batch, not per task. A write that fails for
    /// good (the server out of reach past the link's patience) leaves its deliveries
    /// pending on the server, where their leases run out and another agent takes them:
    /// nothing is lost.
    pub(crate) fn run(self, mut link: Link, writes: Receiver<Write>, held: Arc<Held>) {
        let max_string = limit::max_string(&mut link);
        while let Ok(first) = writes.recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match writes.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            let mut done = Vec::with_capacity(batch.len());
            let mut acks = Acks::default();
            for write in batch {
                done.push(match &write {
                    Write::Outcome { delivery, .. } | Write::Poisoned { delivery, .. } => {
                        (delivery.keys.run.clone(), delivery.entry.clone())
                    }
                    Write::Malformed { keys, entry, .. } => (keys.run.clone(), entry.clone()),
                });
                self.add(&mut pipe, &mut acks, write, max_string);
            }
            acks.add_to(&mut pipe);
            if let Err(error) = link.run("writing outcomes", |c| pipe.query::<()>(c)) {
                eprintln!("procpool-cluster agent {}: {error}", self.agent);
            }
            for (run, entry) in done {
                held.remove(&run, &entry);
            }
        }
    }

    /// Adds the commands of `write` to `pipe`; an output over `max_string` bytes is
    /// its task's error (the server would refuse it, and the whole batch with it).
    fn add(&self, pipe: &mut redis::Pipeline, acks: &mut Acks, write: Write, max_string: u64) {
        match write {
            Write::Outcome {
                delivery,
                outcome,
                cap,
            } => {
                let outcome = outcome.and_then(|output| {
                    limit::check("the output", output.len(), max_string, Direction::ToParent)
                        .map(|()| output)
                });
                self.add_outcome(pipe, acks, delivery, outcome, cap)
            }
            Write::Poisoned { delivery, error } => {
                let reason = error.to_string();
                self.finish(pipe, acks, &delivery, Err(error), Some(reason))
            }
            Write::Malformed {
                keys,
                entry,
                seq,
                reason,
            } => self.malformed(pipe, acks, &keys, &entry, seq, &reason),
        }
    }

    /// Adds the commands of a delivery's outcome to `pipe`, as its verdict says.
    fn add_outcome(
        &self,
        pipe: &mut redis::Pipeline,
        acks: &mut Acks,
        delivery: Delivery,
        outcome: Result<Vec<u8>, TaskError>,
        cap: u32,
    ) {
        match verdict::on_outcome(outcome, delivery.deliveries, cap) {
            Verdict::Final(outcome) => self.finish(pipe, acks, &delivery, outcome, None),
            Verdict::Release(error) => self.release(pipe, &delivery, &error),
            Verdict::Poison(error) => {
                let reason = error.to_string();
                self.finish(pipe, acks, &delivery, Err(error), Some(reason))
            }
        }
    }

    /// The delivery's outcome and its acknowledgement; with a dead letter too when
    /// `dead` gives its reason.
    fn finish(
        &self,
        pipe: &mut redis::Pipeline,
        acks: &mut Acks,
        delivery: &Delivery,
        outcome: Result<Vec<u8>, TaskError>,
        dead: Option<String>,
    ) {
        let outcome = OutcomeEntry {
            seq: delivery.seq,
            agent: self.agent.clone(),
            node: self.node.clone(),
            attempts: delivery.deliveries,
            outcome,
        };
        let keys = &delivery.keys;
        add_entry(pipe, &keys.outcomes, &outcome.fields());
        if let Some(reason) = dead {
            let error = outcome.outcome.as_ref().err();
            let dead = self.dead_letter(&delivery.entry, Some(delivery.seq), &reason, error);
            add_entry(pipe, &keys.dead, &dead);
        }
        acks.add(keys, &delivery.entry);
    }

    /// The release of the delivery for any agent at once, with `error` kept as the
    /// reason, and a ring of the bell for idle agents. A delivery another agent took
    /// over meanwhile (this one's lease lapsed) stays with it.
    fn release(&self, pipe: &mut redis::Pipeline, delivery: &Delivery, error: &TaskError) {
        let keys = &delivery.keys;
        let record = procpool::encode_value(&(delivery.deliveries, error)).unwrap_or_default();
        pipe.cmd("HSET")
            .arg(&keys.errors)
            .arg(delivery.seq)
            .arg(record)
            .ignore()
            .add_command(lease::keep(
                keys,
                &self.agent,
                RELEASED_IDLE_MS,
                [&delivery.entry],
            ))
            .ignore()
            .add_command(ring(&keys.run))
            .ignore();
    }

    /// An entry that is not a task: to the dead letters, acknowledged; if it named a
    /// task number, that task's outcome is the error.
    fn malformed(
        &self,
        pipe: &mut redis::Pipeline,
        acks: &mut Acks,
        keys: &Keys,
        entry: &str,
        seq: Option<u64>,
        reason: &str,
    ) {
        let error = TaskError::Codec {
            side: Side::Parent,
            direction: Direction::ToWorker,
            message: format!("malformed task entry {entry}: {reason}"),
        };
        if let Some(seq) = seq {
            let outcome = OutcomeEntry {
                seq,
                agent: self.agent.clone(),
                node: self.node.clone(),
                attempts: 1,
                outcome: Err(error.clone()),
            };
            add_entry(pipe, &keys.outcomes, &outcome.fields());
        }
        let dead = self.dead_letter(entry, seq, reason, Some(&error));
        add_entry(pipe, &keys.dead, &dead);
        acks.add(keys, entry);
    }

    fn dead_letter(
        &self,
        entry: &str,
        seq: Option<u64>,
        reason: &str,
        error: Option<&TaskError>,
    ) -> Fields {
        let mut fields: Fields = vec![
            ("v", entry::VERSION.into()),
            ("entry", entry.as_bytes().to_vec()),
            ("agent", self.agent.as_bytes().to_vec()),
            ("node", self.node.as_bytes().to_vec()),
            ("reason", reason.as_bytes().to_vec()),
        ];
        if let Some(seq) = seq {
            fields.push(("seq", seq.to_string().into_bytes()));
        }
        if let Some(error) = error {
            fields.push(("err", entry::encode_error(error)));
        }
        fields
    }
}

/// The task entries a batch is done with, by task stream: acknowledged and deleted in
/// one command each per stream. Deleted, because their outcome (or dead letter) is
/// written beside, and a run of many tasks should not keep every input until it
/// expires. An agent that still holds one (its lease lapsed and another took it over)
/// keeps running it; its outcome is a duplicate.
#[derive(Debug, Default)]
struct Acks(HashMap<String, Vec<String>>);

impl Acks {
    fn add(&mut self, keys: &Keys, entry: &str) {
        self.0
            .entry(keys.tasks.clone())
            .or_default()
            .push(entry.to_owned());
    }

    fn add_to(self, pipe: &mut redis::Pipeline) {
        for (tasks, entries) in self.0 {
            pipe.cmd("XACK")
                .arg(&tasks)
                .arg(GROUP)
                .arg(&entries)
                .ignore();
            pipe.cmd("XDEL").arg(&tasks).arg(&entries).ignore();
        }
    }
}

/// Adds an entry of `fields` to the stream `key`.
fn add_entry(pipe: &mut redis::Pipeline, key: &str, fields: &Fields) {
    pipe.cmd("XADD").arg(key).arg("*");
    push_fields(pipe, fields);
    pipe.ignore();
}

/// The last breakdown recorded for task `seq` of a run, with the delivery it ended.
pub(crate) fn last_breakdown(
    connection: &mut Connection,
    keys: &Keys,
    seq: u64,
) -> RedisResult<Option<(u32, TaskError)>> {
    let bytes: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(&keys.errors)
        .arg(seq)
        .query(connection)?;
    Ok(bytes.and_then(|bytes| procpool::decode_value(&bytes).ok()))
}
