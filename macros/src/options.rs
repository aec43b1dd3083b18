//! The attribute's options: `name = "..."`, `timeout = "5s"` or `no_timeout`,
//! `retries = 2`. Each is checked here, at compile time, with an error on its own span.

use std::time::Duration;

use syn::meta::ParseNestedMeta;
use syn::{LitInt, LitStr};

/// What the attribute set; `None` is left to the pool.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) name: Option<LitStr>,
    pub(crate) timeout: Option<Timeout>,
    pub(crate) retries: Option<u32>,
}

/// A task's own time limit.
pub(crate) enum Timeout {
    Limit(Duration),
    Unlimited,
}

/// What the units of a duration are, longest first for the error message's sake.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("min", 60_000), ("s", 1_000), ("ms", 1)];

const EXPECTED: &str =
    "expected `name = \"...\"`, `timeout = \"...\"`, `no_timeout` or `retries = N`";

impl Options {
    /// Reads one option (syn calls it for each of the attribute's comma-separated items).
    pub(crate) fn parse(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some(key) = meta.path.get_ident().map(ToString::to_string) else {
            return Err(meta.error(format!("unknown option: {EXPECTED}")));
        };
        match key.as_str() {
            "name" => {
                let name: LitStr = meta.value()?.parse()?;
                if name.value().trim().is_empty() {
                    return Err(syn::Error::new(
                        name.span(),
                        "a task's name must not be empty",
                    ));
                }
                set(&mut self.name, name, &meta, "name")
            }
            "timeout" => {
                let text: LitStr = meta.value()?.parse()?;
                let limit = duration(&text.value())
                    .map_err(|message| syn::Error::new(text.span(), message))?;
                set(&mut self.timeout, Timeout::Limit(limit), &meta, "timeout")
            }
            "no_timeout" => set(&mut self.timeout, Timeout::Unlimited, &meta, "timeout"),
            "retries" => {
                let n: LitInt = meta.value()?.parse()?;
                let retries = n.base10_parse::<u32>().map_err(|_| {
                    syn::Error::new(n.span(), "`retries` is a whole number from 0 to 4294967295")
                })?;
                set(&mut self.retries, retries, &meta, "retries")
            }
            _ => Err(meta.error(format!("unknown option `{key}`: {EXPECTED}"))),
        }
    }

    /// Whether any option other than the name was given.
    pub(crate) fn has_settings(&self) -> bool {
        self.timeout.is_some() || self.retries.is_some()
    }
}

/// Sets an option once; a second time, or `timeout` with `no_timeout`, is an error.
fn set<T>(
    slot: &mut Option<T>,
    value: T,
    meta: &ParseNestedMeta<'_>,
    what: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        let both = match what {
            "timeout" => {
                "the timeout is given twice (`timeout` and `no_timeout` exclude each other)"
            }
            _ => "this option is given twice",
        };
        return Err(meta.error(both));
    }
    *slot = Some(value);
    Ok(())
}

/// A duration written as a whole number and a unit: `"250ms"`, `"5s"`, `"2min"`, `"1h"`.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "expected a duration such as \"500ms\", \"5s\", \"2min\" or \"1h\" (a whole number \
             and one of the units ms, s, min, h), found {text:?}"
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let Some(&(_, millis)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(expected());
    };
    if digits == 0 {
        return Err(expected());
    }
    // Digits alone that do not fit in a `u64`.
    let too_long = || format!("the timeout {text:?} is too long");
    let number: u64 = number.parse().map_err(|_| too_long())?;
    if number == 0 {
        return Err("a task's timeout must be above zero (for none, write `no_timeout`)".into());
    }
    number
        .checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(too_long)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_a_whole_number_and_a_unit() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        for wrong in [
            "", "5", "s", "5 s", "1.5s", "-1s", "5sec", "5m", " 5s", "5S", "5s ",
        ] {
            let message = duration(wrong).unwrap_err();
            assert!(
                message.starts_with("expected a duration"),
                "{wrong:?}: {message}"
            );
        }
        assert!(duration("0ms").unwrap_err().contains("above zero"));
        assert!(duration("99999999999999999999h")
            .unwrap_err()
            .contains("too long"));
        assert!(duration("18446744073709551615h")
            .unwrap_err()
            .contains("too long"));
    }
}
