//! Current-executable launch from a test binary.
//!
//! A test binary's `main` belongs to the test harness, so a worker cannot start there.
//! [`test_support!`](crate::test_support) adds one test, `procpool_worker_entry`, and
//! registers its path; when the pool re-executes a test binary that has it, it asks the
//! harness to run only that test (`--exact ... --nocapture`), which becomes the worker.
//! This works the same under `cargo test` and `cargo nextest`.

use std::ffi::OsString;

/// Where [`test_support!`](crate::test_support) put the worker entry test.
#[doc(hidden)]
#[derive(Debug)]
pub struct TestEntry {
    /// `module_path!()` at the macro call.
    pub module: &'static str,
}

inventory::collect!(TestEntry);

/// The body of the generated `procpool_worker_entry` test: in a worker process it never
/// returns; in an ordinary test run it returns at once.
#[doc(hidden)]
pub fn test_entry() {
    crate::init();
}

/// Arguments that make a re-executed binary start as a worker.
pub(crate) fn worker_args() -> Vec<OsString> {
    let Some(entry) = inventory::iter::<TestEntry>.into_iter().next() else {
        return Vec::new();
    };
    // libtest names tests by their path inside the crate, without the crate's name.
    let name = match entry.module.split_once("::") {
        Some((_, inner)) => format!("{inner}::procpool_worker_entry"),
        None => "procpool_worker_entry".to_owned(),
    };
    ["--exact", &name, "--nocapture", "--test-threads=1", "-q"]
        .iter()
        .map(OsString::from)
        .collect()
}

/// Makes a test binary usable with the default
/// [`Launch::CurrentExe`](crate::Launch::CurrentExe).
///
/// Invoke it once at the top level of each integration-test crate (or unit-test module
/// tree) that builds pools. It adds a test named `procpool_worker_entry`, which passes
/// at once in a normal run and is the worker's entry point when the pool re-executes the
/// test binary.
#[macro_export]
macro_rules! test_support {
    () => {
        #[test]
        fn procpool_worker_entry() {
            $crate::__private::test_entry();
        }
        $crate::__private::inventory::submit! {
            $crate::__private::TestEntry { module: module_path!() }
        }
    };
}
