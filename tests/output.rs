//! Workers' output on the parent's own streams says whose it is: each line a worker
//! writes to an inherited stderr (and, when asked, stdout) is prefixed with its pid and
//! the name of the task it runs; `OutputMode::Raw` passes it on as written; crash
//! reports keep the raw lines.
//!
//! The parent's own stderr is what these tests check, so each runs this test binary
//! again as a helper (an ignored test that builds a pool) with its stderr piped, and
//! reads what came out.

use std::process::Command;
use std::sync::{Arc, Mutex};

use procpool::{
    BoxError, OutputLine, OutputMode, OutputStream, Pool, PoolBuilder, Task, TaskError,
};
use serde::{Deserialize, Serialize};

procpool::test_support!();

/// How a [`Speak`] task ends once it has spoken.
#[derive(Serialize, Deserialize)]
enum Then {
    Return,
    Panic,
    Abort,
}

/// Writes `stderr` to its stderr and `stdout` to its stdout, one line each, then ends
/// as `then` says; returns its worker's pid.
#[derive(Serialize, Deserialize)]
struct Speak {
    stderr: String,
    stdout: String,
    then: Then,
}

impl Task for Speak {
    const NAME: &'static str = "output_test::Speak";
    type Output = u32;
    fn run(self) -> Result<u32, BoxError> {
        eprintln!("{}", self.stderr);
        println!("{}", self.stdout);
        match self.then {
            Then::Return => Ok(std::process::id()),
            Then::Panic => panic!("a panic on purpose"),
            Then::Abort => {
                // Written unbuffered: the dying words are in the pipe before the abort.
                eprintln!("dying words");
                std::process::abort()
            }
        }
    }
}

procpool::register!(Speak);

/// Returns its worker's pid, saying nothing.
#[derive(Serialize, Deserialize)]
struct Quiet;

impl Task for Quiet {
    const NAME: &'static str = "output_test::Quiet";
    type Output = u32;
    fn run(self) -> Result<u32, BoxError> {
        Ok(std::process::id())
    }
}

procpool::register!(Quiet);

/// Writes its line to stderr.
#[derive(Serialize, Deserialize)]
struct Echo(String);

impl Task for Echo {
    const NAME: &'static str = "output_test::Echo";
    type Output = ();
    fn run(self) -> Result<(), BoxError> {
        eprintln!("{}", self.0);
        Ok(())
    }
}

procpool::register!(Echo);

fn speak(stderr: &str, stdout: &str, then: Then) -> Speak {
    Speak {
        stderr: stderr.to_owned(),
        stdout: stdout.to_owned(),
        then,
    }
}

/// The helper's part: one worker speaks, panics, speaks again and aborts. It reports
/// on its stdout, as `pid <pid>` and `tail <line>` lines, the worker pids and the
/// crash tail of the abort.
fn speak_panic_and_abort(builder: PoolBuilder) {
    let pool = builder.workers(1).core_dumps(false).build().unwrap();
    let quiet = pool.submit(Quiet).unwrap().wait().unwrap();
    println!("quiet {quiet}");
    // Two tasks of two types, one after the other: each line is named after its own,
    // though the parent may read the first one's after the second has started. (A
    // task sent ahead, before the one before has answered, may be named after that
    // one: see `OutputMode::Prefixed`.)
    let pid = pool
        .submit(speak("hello on stderr", "hello on stdout", Then::Return))
        .unwrap()
        .wait()
        .unwrap();
    pool.submit(Echo("echo on stderr".into()))
        .unwrap()
        .wait()
        .unwrap();
    println!("pid {pid}");
    let panicked = pool
        .submit(speak("about to panic", "-", Then::Panic))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(panicked, TaskError::Panicked { .. }),
        "{panicked:?}"
    );
    let aborted = pool
        .submit(speak("about to abort", "-", Then::Abort))
        .unwrap()
        .wait()
        .unwrap_err();
    assert_eq!(aborted.signal(), Some(6), "{aborted:?}");
    for line in aborted.stderr_tail() {
        println!("tail {line}");
    }
    // The worker that replaced the one that aborted: a new pid, and no task yet when
    // it says nothing.
    let next = pool.submit(Quiet).unwrap().wait().unwrap();
    println!("next {next}");
    pool.join();
}

#[test]
#[ignore = "run by the tests below, its stderr piped"]
fn helper_default() {
    speak_panic_and_abort(Pool::builder());
}

#[test]
#[ignore = "run by the tests below, its stderr piped"]
fn helper_raw() {
    speak_panic_and_abort(Pool::builder().stderr(OutputMode::Raw));
}

#[test]
#[ignore = "run by the tests below, its stderr piped"]
fn helper_prefixed_stdout() {
    speak_panic_and_abort(Pool::builder().stdout(OutputMode::Prefixed));
}

/// What a helper run printed.
struct Run {
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Run {
    /// The values of the helper's `key <value>` report lines.
    fn reported(&self, key: &str) -> Vec<String> {
        let key = format!("{key} ");
        self.stdout
            .iter()
            .filter_map(|l| l.strip_prefix(&key))
            .map(str::to_owned)
            .collect()
    }

    /// The one pid reported as `key`.
    fn pid(&self, key: &str) -> u32 {
        let values = self.reported(key);
        assert_eq!(
            values.len(),
            1,
            "{key}: {values:?}\n{}",
            self.stdout.join("\n")
        );
        values[0].parse().unwrap()
    }
}

/// Runs the helper test `name` in a process of its own and collects what it printed.
fn run_helper(name: &str) -> Run {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let lines = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let run = Run {
        stdout: lines(&out.stdout),
        stderr: lines(&out.stderr),
    };
    assert!(
        out.status.success(),
        "helper failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout.join("\n"),
        run.stderr.join("\n")
    );
    run
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

/// By default each line a worker writes to stderr reaches the parent's stderr behind
/// `[worker <pid> <task>] `, a panic's message included; its stdout is the parent's
/// own, as written; the crash tail holds the lines as written.
#[test]
fn inherited_stderr_lines_say_which_worker_and_task_wrote_them() {
    let run = run_helper("helper_default");
    let pid = run.pid("pid");
    let speak = format!("[worker {pid} output_test::Speak] ");
    let stderr = &run.stderr;
    let said = |line: &str| has(stderr, &format!("{speak}{line}"));
    assert!(said("hello on stderr"), "{stderr:#?}");
    let echo = format!("[worker {pid} output_test::Echo] echo on stderr");
    assert!(has(stderr, &echo), "{stderr:#?}");
    assert!(said("about to panic"), "{stderr:#?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with(&speak) && l.contains("panicked at")),
        "the panic message is prefixed: {stderr:#?}"
    );
    assert!(said("a panic on purpose"), "{stderr:#?}");
    assert!(said("about to abort"), "{stderr:#?}");
    assert!(said("dying words"), "{stderr:#?}");
    // Nothing the worker wrote reaches the parent's stderr without a prefix.
    let worker = format!("[worker {pid} ");
    for line in stderr {
        assert!(
            !line.contains("on stderr") && !line.contains("panic on purpose")
                || line.starts_with(&worker),
            "unprefixed: {line:?}"
        );
    }
    assert!(has(&run.stdout, "hello on stdout"), "{:#?}", run.stdout);
    let tail = run.reported("tail");
    assert!(tail.iter().any(|l| l == "about to abort"), "{tail:?}");
    assert!(tail.iter().any(|l| l == "dying words"), "{tail:?}");
    assert!(tail.iter().all(|l| !l.starts_with("[worker")), "{tail:?}");
    assert_ne!(run.pid("next"), pid, "the worker was replaced");
}

/// `OutputMode::Raw` passes a worker's stderr on as it was written.
#[test]
fn raw_stderr_is_passed_on_as_written() {
    let run = run_helper("helper_raw");
    let stderr = &run.stderr;
    for line in [
        "hello on stderr",
        "about to panic",
        "a panic on purpose",
        "dying words",
    ] {
        assert!(has(stderr, line), "{line:?} not as written: {stderr:#?}");
    }
    assert!(
        stderr.iter().all(|l| !l.starts_with("[worker")),
        "{stderr:#?}"
    );
    let tail = run.reported("tail");
    assert!(tail.iter().any(|l| l == "dying words"), "{tail:?}");
}

/// `OutputMode::Prefixed` on stdout prefixes its lines as stderr's are by default.
#[test]
fn prefixed_stdout_says_whose_it_is_too() {
    let run = run_helper("helper_prefixed_stdout");
    let pid = run.pid("pid");
    let line = format!("[worker {pid} output_test::Speak] hello on stdout");
    assert!(has(&run.stdout, &line), "{:#?}", run.stdout);
    assert!(!has(&run.stdout, "hello on stdout"), "{:#?}", run.stdout);
    let stderr = format!("[worker {pid} output_test::Speak] hello on stderr");
    assert!(has(&run.stderr, &stderr), "{:#?}", run.stderr);
}

/// Captured lines carry the name of the task that wrote them.
#[test]
fn captured_lines_carry_the_task_name() {
    let lines: Arc<Mutex<Vec<OutputLine>>> = Arc::default();
    let into = lines.clone();
    let pool = Pool::builder()
        .workers(1)
        .stderr(OutputMode::capture(move |l| into.lock().unwrap().push(l)))
        .build()
        .unwrap();
    pool.submit(Quiet).unwrap().wait().unwrap();
    let pid = pool
        .submit(speak("captured", "-", Then::Return))
        .unwrap()
        .wait()
        .unwrap();
    pool.join();
    let lines = lines.lock().unwrap();
    let line = lines
        .iter()
        .find(|l| l.text == "captured")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(line.worker, pid);
    assert_eq!(line.stream, OutputStream::Stderr);
    assert_eq!(line.task, Some("output_test::Speak"));
}
