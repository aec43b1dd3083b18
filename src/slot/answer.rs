//! What one frame from a worker is: [`classify`], a pure function from the frame's
//! bytes and what the slot waits for to what the frame says, or why it breaks the
//! protocol. The supervisor acts on the result (takes descriptors, delivers records,
//! kills a worker that broke the protocol); this file decides nothing else.

use crate::wire::batch;
use crate::wire::fds;
use crate::wire::frame::{self, Failure, Response};

/// What the slot waits for from its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expected {
    /// The answer to its `Setup`.
    Ready,
    /// The answer to the single task `id`.
    Single { id: u64 },
    /// Answers for batch `id`, which has `left` tasks the worker has not answered for;
    /// with `may_end_early`, its last answer may leave some (the slot cut the batch).
    Batch {
        id: u64,
        left: usize,
        may_end_early: bool,
    },
}

/// What a frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Classified {
    /// A `Ready` of this protocol.
    Ready,
    /// A `Ready` of another protocol: a worker built from another procpool version.
    OtherProtocol(u32),
    /// The task's output: the first `len` bytes, with `fds` descriptors to take.
    Output { len: usize, fds: usize },
    /// The task ended without an output; the worker lives on.
    Failure(Failure),
    /// The job was skipped, as asked.
    Skipped,
    /// The records of the batch's next `count` tasks (the first `len` bytes, checked
    /// well formed), `failures` of them failures; `last` on its final answer, the
    /// batch having run `nanos`.
    Records {
        count: usize,
        failures: usize,
        last: bool,
        nanos: u64,
        len: usize,
    },
    /// The frame breaks the protocol, for this reason.
    Broken(String),
}

/// Reads `frame` as an answer to what the slot waits for.
pub(crate) fn classify(frame: &[u8], expected: Expected) -> Classified {
    let (id, left) = match expected {
        Expected::Ready => {
            return match frame::ready_protocol(frame) {
                Ok(()) => Classified::Ready,
                Err(Some(theirs)) => Classified::OtherProtocol(theirs),
                Err(None) => Classified::Broken("a malformed answer to the set-up".to_owned()),
            }
        }
        Expected::Single { id } => (id, None),
        Expected::Batch {
            id,
            left,
            may_end_early,
        } => (id, Some((left, may_end_early))),
    };
    let broken = |message: String| Classified::Broken(message);
    match (frame::decode::<Response>(frame), left) {
        (Err(e), _) => broken(e.to_string()),
        (Ok((Response::Output { id: got, fds }, len)), None) if got == id => {
            if fds as usize > fds::MAX_FDS {
                return broken(format!("task #{id}'s output names {fds} descriptors"));
            }
            Classified::Output {
                len,
                fds: fds as usize,
            }
        }
        (Ok((Response::Failure { id: got, failure }, _)), None) if got == id => {
            Classified::Failure(failure)
        }
        (Ok((Response::Skipped { id: got }, _)), _) if got == id => Classified::Skipped,
        (
            Ok((
                Response::Records {
                    id: got,
                    count,
                    last,
                    nanos,
                },
                len,
            )),
            Some((left, may_end_early)),
        ) if got == id => {
            let count = count as usize;
            // A cut batch may end early, and answer for all it has left in a partial
            // answer before its empty last one.
            let short = last && count < left;
            let empty = count == 0 && !last;
            let all_but_last = !last && count == left;
            if count > left || empty || ((short || all_but_last) && !may_end_early) {
                return broken(format!(
                    "batch #{id} answered for {count} of its {left} tasks left (last: {last})"
                ));
            }
            let Some(failures) = batch::failed_records(&frame[..len], count) else {
                return broken(format!("batch #{id} sent malformed records"));
            };
            Classified::Records {
                count,
                failures,
                last,
                nanos,
                len,
            }
        }
        (Ok((Response::Ready { .. }, _)), _) => {
            broken("a second Ready while a task ran".to_owned())
        }
        (
            Ok((
                Response::Output { id: got, .. }
                | Response::Failure { id: got, .. }
                | Response::Skipped { id: got }
                | Response::Records { id: got, .. },
                _,
            )),
            _,
        ) => broken(format!(
            "answer of the wrong kind, or for task #{got} while task #{id} was running"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec;
    use crate::wire::frame::{header_only, seal, PROTOCOL, RELEASE};

    fn ready(protocol: u32) -> Vec<u8> {
        header_only(&Response::Ready {
            protocol,
            release: RELEASE.to_owned(),
        })
    }

    fn is_broken(c: &Classified, words: &str) -> bool {
        matches!(c, Classified::Broken(message) if message.contains(words))
    }

    #[test]
    fn the_set_up_is_answered_by_a_ready_of_this_protocol_only() {
        assert_eq!(
            classify(&ready(PROTOCOL), Expected::Ready),
            Classified::Ready
        );
        assert_eq!(
            classify(&ready(PROTOCOL + 1), Expected::Ready),
            Classified::OtherProtocol(PROTOCOL + 1)
        );
        let skipped = header_only(&Response::Skipped { id: 1 });
        assert!(is_broken(&classify(&skipped, Expected::Ready), "set-up"));
        assert!(is_broken(&classify(&[1, 2, 3], Expected::Ready), "set-up"));
    }

    #[test]
    fn a_single_task_s_answer_names_its_payload_and_descriptors() {
        let output = seal(vec![9; 12], &Response::Output { id: 4, fds: 2 });
        let single = Expected::Single { id: 4 };
        assert_eq!(
            classify(&output, single),
            Classified::Output { len: 12, fds: 2 }
        );
        let failure = Failure::Failed {
            chain: vec!["no".into()],
        };
        let failed = header_only(&Response::Failure {
            id: 4,
            failure: failure.clone(),
        });
        assert_eq!(classify(&failed, single), Classified::Failure(failure));
        let skipped = header_only(&Response::Skipped { id: 4 });
        assert_eq!(classify(&skipped, single), Classified::Skipped);
    }

    #[test]
    fn answers_that_break_the_protocol_say_how() {
        let single = Expected::Single { id: 4 };
        let other = header_only(&Response::Output { id: 5, fds: 0 });
        assert!(is_broken(
            &classify(&other, single),
            "task #5 while task #4"
        ));
        let too_many = header_only(&Response::Output {
            id: 4,
            fds: fds::MAX_FDS as u32 + 1,
        });
        assert!(is_broken(&classify(&too_many, single), "descriptors"));
        assert!(is_broken(
            &classify(&ready(PROTOCOL), single),
            "second Ready"
        ));
        let batch_answer = header_only(&Response::Records {
            id: 4,
            count: 0,
            last: true,
            nanos: 0,
        });
        assert!(is_broken(&classify(&batch_answer, single), "wrong kind"));
        assert!(is_broken(&classify(&[0xde, 0xad], single), "too short"));
    }

    fn batch_answer(count: u32, last: bool, records: &[u32]) -> Vec<u8> {
        let mut payload = Vec::new();
        for &value in records {
            batch::push_record(&mut payload, |buf| {
                codec::encode_into(&value, buf).expect("a u32 encodes");
                Ok(())
            });
        }
        seal(
            payload,
            &Response::Records {
                id: 8,
                count,
                last,
                nanos: 77,
            },
        )
    }

    #[test]
    fn a_batch_answer_is_counted_against_what_is_left() {
        let expected = Expected::Batch {
            id: 8,
            left: 3,
            may_end_early: false,
        };
        let two = batch_answer(2, false, &[1, 2]);
        assert!(matches!(
            classify(&two, expected),
            Classified::Records {
                count: 2,
                failures: 0,
                last: false,
                nanos: 77,
                ..
            }
        ));
        let all = batch_answer(3, true, &[1, 2, 3]);
        assert!(matches!(
            classify(&all, expected),
            Classified::Records {
                count: 3,
                last: true,
                ..
            }
        ));
        for (count, last) in [(4, true), (3, false), (2, true), (0, false)] {
            let records: Vec<u32> = (0..count).collect();
            let answer = batch_answer(count, last, &records);
            assert!(
                is_broken(&classify(&answer, expected), "tasks left"),
                "{count} {last}"
            );
        }
        let short = batch_answer(2, false, &[1]);
        assert!(is_broken(&classify(&short, expected), "malformed records"));
    }

    #[test]
    fn a_cut_batch_may_end_before_its_last_task() {
        let cut = Expected::Batch {
            id: 8,
            left: 3,
            may_end_early: true,
        };
        for (count, last) in [(2, true), (0, true), (3, true), (1, false), (3, false)] {
            let records: Vec<u32> = (0..count).collect();
            let answer = batch_answer(count, last, &records);
            assert!(
                matches!(classify(&answer, cut), Classified::Records { .. }),
                "{count} {last}"
            );
        }
        for (count, last) in [(4, true), (4, false), (0, false)] {
            let records: Vec<u32> = (0..count).collect();
            let answer = batch_answer(count, last, &records);
            assert!(
                is_broken(&classify(&answer, cut), "tasks left"),
                "{count} {last}"
            );
        }
    }
}
