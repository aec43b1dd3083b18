//! Every accepted shape of task function: called here as a function, and run as a task
//! (`TaskFn::run`, what a worker does) without a pool.

use procpool::{Task, TaskFn, TaskOptions};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    words: usize,
}

/// Counts words: docs and visibility carry over.
#[procpool::task]
pub fn count(text: String) -> Report {
    Report {
        words: text.split_whitespace().count(),
    }
}

#[procpool::task(name = "pass::add/v1", timeout = "250ms", retries = 3)]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[procpool::task(no_timeout)]
fn nothing() {}

#[procpool::task(timeout = "2min")]
fn parse(text: String) -> Result<u64, std::num::ParseIntError> {
    text.parse()
}

#[procpool::task]
fn positive(n: i64) -> anyhow::Result<i64> {
    anyhow::ensure!(n > 0, "{n} is not positive");
    Ok(n)
}

#[procpool::task]
fn read(path: std::path::PathBuf) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

#[procpool::task]
fn halve(n: u32) -> Result<u32, String> {
    match n % 2 {
        0 => Ok(n / 2),
        _ => Err(format!("{n} is odd")),
    }
}

#[procpool::task]
fn patterns((a, b): (u8, u8), mut c: u8) -> u8 {
    c += a;
    c + b
}

#[procpool::task]
fn factorial(n: u64) -> u64 {
    match n {
        0 => 1,
        _ => n * factorial(n - 1),
    }
}

mod nested {
    #[procpool::task]
    pub(crate) fn one() -> u8 {
        1
    }
}

fn is_task<T: Task>(_: &T) {}

fn main() {
    // Called here, like the functions they were.
    assert_eq!(count("a b c".to_owned()), Report { words: 3 });
    assert_eq!(add(2, 3), 5);
    nothing();
    assert_eq!(parse("12".to_owned()), Ok(12));
    assert_eq!(patterns((1, 2), 3), 6);
    assert_eq!(factorial(5), 120);
    assert_eq!(nested::one(), 1);
    let pointer: fn(u64, u64) -> u64 = *add;
    assert_eq!(pointer(1, 1), 2);
    let parsed: Vec<_> = ["1", "x"].map(String::from).into_iter().map(*parse).collect();
    assert!(parsed[0] == Ok(1) && parsed[1].is_err());

    // Names: the module path and the function's, unless set.
    assert!(count::NAME.ends_with("::count"), "{}", count::NAME);
    assert!(nested::one::NAME.ends_with("::nested::one"), "{}", nested::one::NAME);
    assert_eq!(add::NAME, "pass::add/v1");

    // Options: the attribute's, none where it sets none.
    assert_eq!(
        add::options(),
        TaskOptions::new().timeout(Duration::from_millis(250)).retries(3)
    );
    assert_eq!(nothing::options(), TaskOptions::new().no_timeout());
    assert_eq!(parse::options(), TaskOptions::new().timeout(Duration::from_secs(120)));
    assert_eq!(count::options(), TaskOptions::new());

    // Run as a worker would: the input is the argument, a tuple of them, or ().
    assert_eq!(add::run((4, 5)).unwrap(), 9);
    nothing::run(()).unwrap();
    assert_eq!(nested::one::run(()).unwrap(), 1);
    assert_eq!(parse::run("x".to_owned()).unwrap_err().to_string(), "invalid digit found in string");
    assert_eq!(positive::run(-1).unwrap_err().to_string(), "-1 is not positive");
    assert_eq!(halve::run(3).unwrap_err().to_string(), "3 is odd");
    assert_eq!(halve::run(4).unwrap(), 2);
    assert!(read::run("/nonexistent/procpool".into()).is_err());

    // A call of a task function is a task like any other, named after it.
    let call = procpool::Call::new(add, (1, 2));
    is_task(&call);
    assert_eq!(<procpool::Call<add> as Task>::NAME, "pass::add/v1");
    assert_eq!(<procpool::Call<add> as Task>::options(), add::options());
    assert_eq!(call.run().unwrap(), 3);
}
