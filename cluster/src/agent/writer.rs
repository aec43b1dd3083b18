//! The agent's writer: a thread of its own, with its own connection, that writes each
//! delivery's outcome back in one `MULTI` (the outcome and the acknowledgement, or the
//! release with its reason, or the poisoning with its dead letter), then frees the
//! delivery's place so the fetching loop may take another task.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use procpool::{Direction, Side, TaskError};
use redis::{Connection, RedisResult};

use super::held::{Delivery, Held};
use super::verdict::{self, Verdict};
use crate::entry::{self, push_fields, Fields, OutcomeEntry};
use crate::error::ClusterError;
use crate::keys::{ring, Keys, GROUP};
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

impl Writer {
    /// Writes until every sender is gone. A write that fails for good (the server out
    /// of reach past the link's patience) leaves the delivery pending on the server,
    /// where its lease runs out and another agent takes it: nothing is lost.
    pub(crate) fn run(self, mut link: Link, writes: Receiver<Write>, held: Arc<Held>) {
        for write in writes {
            let (run, entry) = match &write {
                Write::Outcome { delivery, .. } | Write::Poisoned { delivery, .. } => {
                    (delivery.keys.run.clone(), delivery.entry.clone())
                }
                Write::Malformed { keys, entry, .. } => (keys.run.clone(), entry.clone()),
            };
            if let Err(error) = self.write(&mut link, write) {
                eprintln!("procpool-cluster agent {}: {error}", self.agent);
            }
            held.remove(&run, &entry);
        }
    }

    fn write(&self, link: &mut Link, write: Write) -> Result<(), ClusterError> {
        match write {
            Write::Outcome {
                delivery,
                outcome,
                cap,
            } => match verdict::on_outcome(outcome, delivery.deliveries, cap) {
                Verdict::Final(outcome) => self.finish(link, &delivery, outcome, None),
                Verdict::Release(error) => self.release(link, &delivery, &error),
                Verdict::Poison(error) => {
                    let reason = error.to_string();
                    self.finish(link, &delivery, Err(error), Some(reason))
                }
            },
            Write::Poisoned { delivery, error } => {
                let reason = error.to_string();
                self.finish(link, &delivery, Err(error), Some(reason))
            }
            Write::Malformed {
                keys,
                entry,
                seq,
                reason,
            } => self.malformed(link, &keys, &entry, seq, &reason),
        }
    }

    /// Writes the delivery's outcome and acknowledges it, in one `MULTI`; with a dead
    /// letter too when `dead` gives its reason.
    fn finish(
        &self,
        link: &mut Link,
        delivery: &Delivery,
        outcome: Result<Vec<u8>, TaskError>,
        dead: Option<String>,
    ) -> Result<(), ClusterError> {
        let outcome = OutcomeEntry {
            seq: delivery.seq,
            agent: self.agent.clone(),
            node: self.node.clone(),
            attempts: delivery.deliveries,
            outcome,
        };
        let keys = &delivery.keys;
        let mut dead_fields = None;
        if let Some(reason) = dead {
            dead_fields = Some(self.dead_letter(
                &delivery.entry,
                Some(delivery.seq),
                &reason,
                outcome.outcome.as_ref().err(),
            ));
        }
        let fields = outcome.fields();
        link.run("writing an outcome", |c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("XADD").arg(&keys.outcomes).arg("*");
            push_fields(&mut pipe, &fields);
            pipe.ignore();
            if let Some(dead) = &dead_fields {
                pipe.cmd("XADD").arg(&keys.dead).arg("*");
                push_fields(&mut pipe, dead);
                pipe.ignore();
            }
            pipe.cmd("XACK")
                .arg(&keys.tasks)
                .arg(GROUP)
                .arg(&delivery.entry)
                .ignore();
            pipe.query::<()>(c)
        })
    }

    /// Releases the delivery for any agent at once, keeping `error` as the reason, in
    /// one `MULTI`, and rings the bell for idle agents.
    fn release(
        &self,
        link: &mut Link,
        delivery: &Delivery,
        error: &TaskError,
    ) -> Result<(), ClusterError> {
        let keys = &delivery.keys;
        let record = procpool::encode_value(&(delivery.deliveries, error)).unwrap_or_default();
        link.run("releasing a task", |c| {
            redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&keys.errors)
                .arg(delivery.seq)
                .arg(&record)
                .ignore()
                .cmd("XCLAIM")
                .arg(&keys.tasks)
                .arg(GROUP)
                .arg(&self.agent)
                .arg(0)
                .arg(&delivery.entry)
                .arg("IDLE")
                .arg(RELEASED_IDLE_MS)
                .arg("JUSTID")
                .ignore()
                .add_command(ring(&keys.run))
                .ignore()
                .query::<()>(c)
        })
    }

    /// Puts an entry that is not a task on the dead letters and acknowledges it; if it
    /// named a task number, that task's outcome is the error.
    fn malformed(
        &self,
        link: &mut Link,
        keys: &Keys,
        entry: &str,
        seq: Option<u64>,
        reason: &str,
    ) -> Result<(), ClusterError> {
        let error = TaskError::Codec {
            side: Side::Parent,
            direction: Direction::ToWorker,
            message: format!("malformed task entry {entry}: {reason}"),
        };
        let outcome = seq.map(|seq| {
            OutcomeEntry {
                seq,
                agent: self.agent.clone(),
                node: self.node.clone(),
                attempts: 1,
                outcome: Err(error.clone()),
            }
            .fields()
        });
        let dead = self.dead_letter(entry, seq, reason, Some(&error));
        link.run("setting aside a malformed entry", |c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            if let Some(outcome) = &outcome {
                pipe.cmd("XADD").arg(&keys.outcomes).arg("*");
                push_fields(&mut pipe, outcome);
                pipe.ignore();
            }
            pipe.cmd("XADD").arg(&keys.dead).arg("*");
            push_fields(&mut pipe, &dead);
            pipe.ignore();
            pipe.cmd("XACK")
                .arg(&keys.tasks)
                .arg(GROUP)
                .arg(entry)
                .ignore();
            pipe.query::<()>(c)
        })
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
