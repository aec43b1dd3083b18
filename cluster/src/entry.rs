//! What a run's stream entries hold, field by field, and the parsing of what comes back:
//! everything read from the server is untrusted, so a malformed entry is a
//! [`Malformed`] naming what is wrong (and the task, when its number could be read),
//! never a panic.

use std::collections::HashMap;
use std::time::Duration;

use procpool::{EncodedTask, TaskError};
use redis::Value;

/// The version of the entry layout, written in each entry as `v`.
pub(crate) const VERSION: &str = "1";

/// A task of a run: its number in the run and the task as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskEntry {
    /// The task's number in its run, from 0 in submission order.
    pub(crate) seq: u64,
    /// The task.
    pub(crate) task: EncodedTask,
    /// Its own timeout, if the submitter set one: `Some(None)` for none at all.
    pub(crate) timeout: Option<Option<Duration>>,
}

/// The outcome of one delivery of a task, as an agent wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutcomeEntry {
    /// The task's number in its run.
    pub(crate) seq: u64,
    /// The agent that ran it (its consumer name).
    pub(crate) agent: String,
    /// The node (machine) the agent ran on.
    pub(crate) node: String,
    /// Which delivery of the task this was, from 1.
    pub(crate) attempts: u32,
    /// The output's bytes, or why there are none.
    pub(crate) outcome: Result<Vec<u8>, TaskError>,
}

/// An entry that is not what its stream should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// The task number the entry gave, if it could be read.
    pub(crate) seq: Option<u64>,
    /// What is wrong with it.
    pub(crate) reason: String,
}

/// The fields of an entry: name and value, in the order they are written.
pub(crate) type Fields = Vec<(&'static str, Vec<u8>)>;

impl TaskEntry {
    /// The entry's fields.
    pub(crate) fn fields(&self) -> Fields {
        let mut fields = vec![
            ("v", VERSION.into()),
            ("seq", self.seq.to_string().into_bytes()),
            ("name", self.task.name().as_bytes().to_vec()),
            ("types", format!("{:016x}", self.task.types()).into_bytes()),
            ("input", self.task.input().to_vec()),
        ];
        match self.timeout {
            Some(Some(timeout)) => {
                // At least a millisecond: zero would be no limit one could run in.
                let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                fields.push(("timeout_ms", millis.max(1).to_string().into_bytes()));
            }
            Some(None) => fields.push(("timeout_ms", b"none".to_vec())),
            None => {}
        }
        fields
    }

    /// Reads a task entry.
    pub(crate) fn parse(map: &HashMap<String, Value>) -> Result<TaskEntry, Malformed> {
        let seq = number(map, "seq").map_err(|reason| Malformed { seq: None, reason })?;
        let malformed = |reason: String| Malformed {
            seq: Some(seq),
            reason,
        };
        version(map).map_err(malformed)?;
        let name = text(map, "name").map_err(malformed)?;
        let types = text(map, "types").map_err(malformed)?;
        let types = u64::from_str_radix(&types, 16)
            .ok()
            .filter(|_| types.len() == 16)
            .ok_or_else(|| malformed(format!("field `types` is not 16 hex digits: {types:?}")))?;
        let input = bytes(map, "input").map_err(malformed)?.to_vec();
        let timeout = match map.contains_key("timeout_ms") {
            false => None,
            true if bytes(map, "timeout_ms").map_err(malformed)? == b"none" => Some(None),
            true => match number(map, "timeout_ms").map_err(malformed)? {
                0 => return Err(malformed("field `timeout_ms` is zero".to_owned())),
                millis => Some(Some(Duration::from_millis(millis))),
            },
        };
        Ok(TaskEntry {
            seq,
            task: EncodedTask::new(name, types, input),
            timeout,
        })
    }
}

impl OutcomeEntry {
    /// The entry's fields.
    pub(crate) fn fields(&self) -> Fields {
        let mut fields = vec![
            ("v", VERSION.into()),
            ("seq", self.seq.to_string().into_bytes()),
            ("agent", self.agent.as_bytes().to_vec()),
            ("node", self.node.as_bytes().to_vec()),
            ("attempts", self.attempts.to_string().into_bytes()),
        ];
        match &self.outcome {
            Ok(output) => fields.push(("ok", output.clone())),
            Err(error) => fields.push(("err", encode_error(error))),
        }
        fields
    }

    /// Reads an outcome entry.
    pub(crate) fn parse(map: &HashMap<String, Value>) -> Result<OutcomeEntry, Malformed> {
        let seq = number(map, "seq").map_err(|reason| Malformed { seq: None, reason })?;
        let malformed = |reason: String| Malformed {
            seq: Some(seq),
            reason,
        };
        version(map).map_err(malformed)?;
        let attempts = number(map, "attempts").map_err(malformed)?;
        let attempts = u32::try_from(attempts)
            .map_err(|_| malformed(format!("field `attempts` is too large: {attempts}")))?;
        let outcome = match (map.get("ok"), map.get("err")) {
            (Some(_), None) => Ok(bytes(map, "ok").map_err(malformed)?.to_vec()),
            (None, Some(_)) => Err(decode_error(bytes(map, "err").map_err(malformed)?)
                .map_err(|e| malformed(format!("field `err` is not an error: {e}")))?),
            _ => return Err(malformed("not exactly one of `ok` and `err`".to_owned())),
        };
        Ok(OutcomeEntry {
            seq,
            agent: text(map, "agent").map_err(malformed)?,
            node: text(map, "node").map_err(malformed)?,
            attempts,
            outcome,
        })
    }
}

/// A task error as bytes, for an outcome or the run's record of breakdowns.
pub(crate) fn encode_error(error: &TaskError) -> Vec<u8> {
    // Every field of a TaskError is plain data: its encoding cannot fail.
    procpool::encode_value(error).unwrap_or_default()
}

/// A task error from bytes.
pub(crate) fn decode_error(bytes: &[u8]) -> Result<TaskError, String> {
    procpool::decode_value(bytes)
}

fn version(map: &HashMap<String, Value>) -> Result<(), String> {
    match text(map, "v")? {
        v if v == VERSION => Ok(()),
        v => Err(format!(
            "entry layout version {v:?}, this build reads {VERSION:?}"
        )),
    }
}

/// The bytes of the field `name`.
pub(crate) fn bytes<'m>(map: &'m HashMap<String, Value>, name: &str) -> Result<&'m [u8], String> {
    match map.get(name) {
        Some(Value::BulkString(bytes)) => Ok(bytes),
        Some(other) => Err(format!("field `{name}` is not a string: {other:?}")),
        None => Err(format!("no field `{name}`")),
    }
}

/// The field `name` as UTF-8 text.
fn text(map: &HashMap<String, Value>, name: &str) -> Result<String, String> {
    let bytes = bytes(map, name)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("field `{name}` is not UTF-8"))
}

/// The field `name` as a decimal number.
pub(crate) fn number(map: &HashMap<String, Value>, name: &str) -> Result<u64, String> {
    let text = text(map, name)?;
    text.parse()
        .map_err(|_| format!("field `{name}` is not a number: {text:?}"))
}

/// Appends an entry's fields to the command being built.
pub(crate) fn push_fields(pipe: &mut redis::Pipeline, fields: &Fields) {
    for (name, value) in fields {
        pipe.arg(*name).arg(value.as_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &Fields) -> HashMap<String, Value> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v.clone())))
            .collect()
    }

    fn task() -> TaskEntry {
        TaskEntry {
            seq: 41,
            task: EncodedTask::new("app::Parse", 0xdead_beef_0000_0001, vec![0, 1, 255]),
            timeout: Some(Some(Duration::from_millis(2500))),
        }
    }

    #[test]
    fn a_task_entry_reads_back_as_written() {
        let entry = task();
        assert_eq!(TaskEntry::parse(&map(&entry.fields())), Ok(entry));
        for timeout in [None, Some(None)] {
            let other = TaskEntry { timeout, ..task() };
            assert_eq!(TaskEntry::parse(&map(&other.fields())), Ok(other));
        }
    }

    #[test]
    fn an_outcome_entry_reads_back_as_written() {
        for outcome in [
            Ok(vec![1, 2, 3]),
            Err(TaskError::Poisoned {
                attempts: 3,
                last_error: Box::new(TaskError::AgentLost {
                    agent: "n1/42/ab".into(),
                }),
            }),
        ] {
            let entry = OutcomeEntry {
                seq: 7,
                agent: "n1/42/ab".into(),
                node: "n1".into(),
                attempts: 2,
                outcome,
            };
            assert_eq!(OutcomeEntry::parse(&map(&entry.fields())), Ok(entry));
        }
    }

    #[test]
    fn a_malformed_task_entry_says_what_is_wrong_and_keeps_its_number() {
        let good = map(&task().fields());
        let cases: Vec<(&str, Option<Value>, Option<u64>, &str)> = vec![
            ("seq", None, None, "no field `seq`"),
            (
                "seq",
                Some(Value::BulkString(b"x1".to_vec())),
                None,
                "not a number",
            ),
            ("seq", Some(Value::Int(3)), None, "not a string"),
            (
                "v",
                Some(Value::BulkString(b"9".to_vec())),
                Some(41),
                "version",
            ),
            ("name", None, Some(41), "no field `name`"),
            (
                "name",
                Some(Value::BulkString(vec![0xff, 0xfe])),
                Some(41),
                "UTF-8",
            ),
            (
                "types",
                Some(Value::BulkString(b"12".to_vec())),
                Some(41),
                "16 hex",
            ),
            (
                "types",
                Some(Value::BulkString(b"zzzzzzzzzzzzzzzz".to_vec())),
                Some(41),
                "16 hex",
            ),
            ("input", None, Some(41), "no field `input`"),
            (
                "timeout_ms",
                Some(Value::BulkString(b"-5".to_vec())),
                Some(41),
                "not a number",
            ),
        ];
        for (field, value, seq, words) in cases {
            let mut bad = good.clone();
            match value {
                Some(value) => bad.insert(field.to_owned(), value),
                None => bad.remove(field),
            };
            let error = TaskEntry::parse(&bad).unwrap_err();
            assert_eq!(error.seq, seq, "{field}");
            assert!(error.reason.contains(words), "{field}: {}", error.reason);
        }
        assert!(TaskEntry::parse(&HashMap::new()).is_err());
    }

    #[test]
    fn a_malformed_outcome_entry_is_refused() {
        let entry = OutcomeEntry {
            seq: 7,
            agent: "a".into(),
            node: "n".into(),
            attempts: 1,
            outcome: Err(TaskError::Cancelled),
        };
        let good = map(&entry.fields());
        let mut both = good.clone();
        both.insert("ok".into(), Value::BulkString(vec![1]));
        assert!(OutcomeEntry::parse(&both)
            .unwrap_err()
            .reason
            .contains("exactly one"));
        let mut garbage = good.clone();
        garbage.insert("err".into(), Value::BulkString(vec![200, 1, 2]));
        assert!(OutcomeEntry::parse(&garbage)
            .unwrap_err()
            .reason
            .contains("not an error"));
        let mut huge = good;
        huge.insert(
            "attempts".into(),
            Value::BulkString(b"99999999999".to_vec()),
        );
        assert!(OutcomeEntry::parse(&huge)
            .unwrap_err()
            .reason
            .contains("too large"));
    }
}
