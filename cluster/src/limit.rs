//! The most the server holds in one string (`proto-max-bulk-len`): a task's input or
//! an outcome's output larger than that is refused by the server, which closes the
//! connection, and would be tried again and again as if the server were out of reach.
//! So both sides check first, and a field too big is that task's error.

use std::collections::HashMap;

use procpool::{Direction, Side, TaskError};

use crate::link::Link;

/// Redis's default for `proto-max-bulk-len`: 512 MiB.
pub(crate) const DEFAULT_MAX_STRING: u64 = 512 << 20;

/// The most the server at the other end of `link` holds in a string, as its settings
/// say; Redis's default when they cannot be read (`CONFIG` renamed or not allowed).
pub(crate) fn max_string(link: &mut Link) -> u64 {
    let setting = link.run("reading the server's limits", |c| {
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("proto-max-bulk-len")
            .query::<HashMap<String, String>>(c)
    });
    setting
        .ok()
        .and_then(|setting| setting.get("proto-max-bulk-len")?.parse().ok())
        .unwrap_or(DEFAULT_MAX_STRING)
}

/// `Err` naming what is too big when `what` (the task's input or its output) of `len`
/// bytes does not fit in `max` bytes, going `direction`.
pub(crate) fn check(
    what: &str,
    len: usize,
    max: u64,
    direction: Direction,
) -> Result<(), TaskError> {
    match u64::try_from(len).is_ok_and(|len| len <= max) {
        true => Ok(()),
        false => Err(TaskError::Codec {
            side: Side::Parent,
            direction,
            message: format!(
                "{what} is {len} bytes, over the limit of {max} bytes the server holds in a string"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_fits_up_to_the_limit_and_no_further() {
        assert_eq!(check("the output", 10, 10, Direction::ToParent), Ok(()));
        match check("the output", 11, 10, Direction::ToParent) {
            Err(TaskError::Codec { message, .. }) => {
                assert!(message.contains("11 bytes") && message.contains("limit of 10"))
            }
            other => panic!("{other:?}"),
        }
    }
}
