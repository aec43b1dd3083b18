//! The payloads of batch frames: many tasks in one `Batch` request, many outcomes in one
//! `Records` response; and [`BATCH_TIME`], what both sides take a batch to last.
//!
//! Both are sequences of length-prefixed entries (`u32` little endian), so that each
//! entry is decoded from exactly its own bytes: one entry whose type reads more or fewer
//! bytes than it wrote spoils that entry only. A request holds one entry per task (its
//! encoding); a response holds one record per task, in order: `tag | body`, where the
//! tag says whether the body is the task's encoded output or its encoded [`Failure`].

use std::time::Duration;

use super::codec;
use super::frame::Failure;
use crate::error::TaskError;

/// About how long one batch should keep a worker busy: the map sizes batches to it, and
/// a worker whose batch runs well past it answers for what it has finished. Long
/// enough that the cost of a batch (frames, wake-ups) is small beside it, short enough
/// to balance the work.
pub(crate) const BATCH_TIME: Duration = Duration::from_millis(1);

const LEN: usize = 4;
/// Record tag: the body is the encoded output.
const OUTPUT: u8 = 0;
/// Record tag: the body is an encoded [`Failure`].
const FAILURE: u8 = 1;

/// Appends one task's entry to a batch request: `encode` writes the task's encoding.
/// On error nothing is left behind.
pub(crate) fn push_item<E>(
    buf: &mut Vec<u8>,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = buf.len();
    buf.extend_from_slice(&[0; LEN]);
    if let Err(e) = encode(buf) {
        buf.truncate(start);
        return Err(e);
    }
    seal_entry(buf, start);
    Ok(())
}

/// Appends one task's record to a batch response: `run` writes the output encoding or
/// says why there is none. Returns the record's bytes.
pub(crate) fn push_record(
    buf: &mut Vec<u8>,
    run: impl FnOnce(&mut Vec<u8>) -> Result<(), Failure>,
) -> std::ops::Range<usize> {
    let start = buf.len();
    buf.extend_from_slice(&[0; LEN]);
    buf.push(OUTPUT);
    if let Err(failure) = run(buf) {
        buf.truncate(start + LEN);
        buf.push(FAILURE);
        codec::encode_into(&failure, buf).expect("failures always encode");
    }
    seal_entry(buf, start);
    start..buf.len()
}

fn seal_entry(buf: &mut [u8], start: usize) {
    let len = u32::try_from(buf.len() - start - LEN).expect("an entry is under 4 GiB");
    buf[start..start + LEN].copy_from_slice(&len.to_le_bytes());
}

/// The entries of a batch payload, in order. Yields `None` for bytes that do not form an
/// entry (the rest of the payload is then unreadable).
#[derive(Debug, Clone)]
pub(crate) struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Entries<'a> {
    pub(crate) fn new(payload: &'a [u8]) -> Self {
        Entries { rest: payload }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let entry = self.rest.get(..LEN).and_then(|len| {
            let len = u32::from_le_bytes(len.try_into().expect("LEN bytes")) as usize;
            self.rest.get(LEN..LEN.checked_add(len)?)
        });
        match entry {
            Some(entry) => {
                self.rest = &self.rest[LEN + entry.len()..];
                Some(Some(entry))
            }
            None => {
                self.rest = &[];
                Some(None)
            }
        }
    }
}

/// The byte length of the first `n` entries of `payload`, if it has that many.
pub(crate) fn prefix_len(payload: &[u8], n: usize) -> Option<usize> {
    let mut entries = Entries::new(payload);
    for _ in 0..n {
        entries.next()??;
    }
    Some(payload.len() - entries.remaining())
}

/// Whether `payload` is exactly `n` well-formed records.
pub(crate) fn records_are_well_formed(payload: &[u8], n: usize) -> bool {
    failed_records(payload, n).is_some()
}

/// How many of the records in `payload` are failures, if it is exactly `n` well-formed
/// records. Checking them reads every tag anyway: counting costs nothing more.
pub(crate) fn failed_records(payload: &[u8], n: usize) -> Option<usize> {
    let mut entries = Entries::new(payload);
    let mut failures = 0;
    for _ in 0..n {
        match entries.next() {
            Some(Some([OUTPUT, ..])) => {}
            Some(Some([FAILURE, ..])) => failures += 1,
            _ => return None,
        }
    }
    (entries.remaining() == 0).then_some(failures)
}

/// One task's record, read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    Output(&'a [u8]),
    Failure(Result<Failure, String>),
}

impl<'a> Record<'a> {
    /// The output's encoding, or the error the task ended in (`types` describes the
    /// task's types, for a [`TaskError::WrongTypes`]).
    pub(crate) fn into_result(self, types: impl FnOnce() -> String) -> Result<&'a [u8], TaskError> {
        match self {
            Record::Output(body) => Ok(body),
            Record::Failure(Ok(failure)) => Err(failure.into_error(types)),
            Record::Failure(Err(message)) => Err(TaskError::Protocol { message }),
        }
    }
}

/// Reads a record's tag and body (from a payload `records_are_well_formed` accepted).
pub(crate) fn read_record(entry: &[u8]) -> Record<'_> {
    match entry.split_first() {
        Some((&OUTPUT, body)) => Record::Output(body),
        Some((&FAILURE, body)) => Record::Failure(codec::decode(body)),
        _ => Record::Failure(Err(format!("a record with tag {:?}", entry.first()))),
    }
}

/// A record writer for tests: the encoding of `value`.
#[cfg(test)]
pub(crate) fn output<T: serde::Serialize>(
    value: &T,
) -> impl FnOnce(&mut Vec<u8>) -> Result<(), Failure> + '_ {
    move |buf| {
        codec::encode_into(value, buf).expect("test values encode");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_records_round_trip() {
        let mut items = Vec::new();
        for n in [1u64, 300, u64::MAX] {
            push_item(&mut items, |b| codec::encode_into(&n, b)).unwrap();
        }
        let failed = push_item(&mut items, |_| Err("no"));
        assert_eq!(failed, Err("no"));
        let decoded: Vec<u64> = Entries::new(&items)
            .map(|e| codec::decode(e.unwrap()).unwrap())
            .collect();
        assert_eq!(decoded, [1, 300, u64::MAX]);
        assert_eq!(prefix_len(&items, 0), Some(0));
        assert_eq!(prefix_len(&items, 3), Some(items.len()));
        assert_eq!(prefix_len(&items, 4), None);

        let mut records = Vec::new();
        push_record(&mut records, output(&7u64));
        push_record(&mut records, |b| {
            b.push(99); // written, then taken back by the failure
            Err(Failure::Failed {
                chain: vec!["bad".into()],
            })
        });
        assert!(records_are_well_formed(&records, 2));
        assert_eq!(failed_records(&records, 2), Some(1));
        assert!(!records_are_well_formed(&records, 1));
        assert!(!records_are_well_formed(&records, 3));
        let read: Vec<Record<'_>> = Entries::new(&records)
            .map(|e| read_record(e.unwrap()))
            .collect();
        assert_eq!(read[0], Record::Output(&[7]));
        assert_eq!(
            read[1],
            Record::Failure(Ok(Failure::Failed {
                chain: vec!["bad".into()]
            }))
        );
    }

    #[test]
    fn cut_or_garbled_payloads_are_refused_not_misread() {
        let mut records = Vec::new();
        for n in 0..3u64 {
            push_record(&mut records, output(&n));
        }
        for cut in 0..records.len() {
            assert!(!records_are_well_formed(&records[..cut], 3), "cut at {cut}");
        }
        let mut bad_tag = records.clone();
        bad_tag[LEN] = 7;
        assert!(!records_are_well_formed(&bad_tag, 3));
        let mut long = records.clone();
        long[..LEN].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!records_are_well_formed(&long, 3));
        assert_eq!(Entries::new(&long).next(), Some(None));
    }
}
