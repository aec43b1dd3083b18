//! Faults found by an adversarial review of the cluster mode, each shown with a real
//! `redis-server` and agents as real processes (this binary run as an agent), and kept
//! as a regression test.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use procpool::{BoxError, Task, TaskError};
use procpool_cluster::{ClusterError, Outcome, Run};
use procpool_worker::{Fault, Square};
use serde::{Deserialize, Serialize};
use support::agent::AgentProcess;
use support::server::RedisServer;
use support::watch::{collect, connect, eventually, held_by};

procpool::test_support!();

#[test]
fn agent_entry() {
    support::agent::agent_entry();
}

/// The environment variable that makes `broken_agent_entry` serve: the server's URL.
const BROKEN_URL: &str = "PP_REVIEW_BROKEN_AGENT_URL";

/// An agent whose pool can never start a worker (its workers' directory does not
/// exist), when `BROKEN_URL` is set.
#[test]
fn broken_agent_entry() {
    let Ok(url) = std::env::var(BROKEN_URL) else {
        return;
    };
    procpool_worker::link();
    let agent = procpool_cluster::Agent::builder(url)
        .node("broken")
        .lease(Duration::from_millis(1000))
        .patience(Duration::from_secs(10))
        .pool(
            procpool::Pool::builder()
                .workers(1)
                .current_dir("/nonexistent/procpool-review")
                .max_start_failures(1),
        )
        .build()
        .expect("the agent connects");
    if let Err(error) = agent.serve() {
        eprintln!("broken agent stopped: {error}");
        std::process::exit(3);
    }
}

/// Crashes (abort) after `crash_after_ms` on its first run anywhere (the marker file
/// does not exist yet), and returns 1 after `ok_after_ms` on any later run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CrashLateFirst {
    marker: PathBuf,
    crash_after_ms: u64,
    ok_after_ms: u64,
}

impl Task for CrashLateFirst {
    const NAME: &'static str = "review::CrashLateFirst";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        let first = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.marker)
            .is_ok();
        if first {
            std::thread::sleep(Duration::from_millis(self.crash_after_ms));
            std::process::abort();
        }
        std::thread::sleep(Duration::from_millis(self.ok_after_ms));
        Ok(1)
    }
}

/// Sleeps `ms` and returns it; with a marker, aborts instead the first time it runs
/// anywhere (the marker file does not exist yet).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SleepOrCrashOnce {
    ms: u64,
    marker: Option<PathBuf>,
}

impl Task for SleepOrCrashOnce {
    const NAME: &'static str = "review::SleepOrCrashOnce";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        if let Some(marker) = &self.marker {
            let first = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(marker)
                .is_ok();
            if first {
                std::process::abort();
            }
        }
        std::thread::sleep(Duration::from_millis(self.ms));
        Ok(self.ms)
    }
}

procpool::register!(CrashLateFirst, SleepOrCrashOnce);

const LEASE: Duration = Duration::from_millis(1000);

/// What collecting a whole run gave: each outcome, or the first error.
type Collected<O> = Result<HashMap<u64, Outcome<O>>, ClusterError>;

/// Collects `run` on a thread of its own and waits up to `limit`: `None` if the
/// collection had not ended by then (the thread is left behind, to end with its
/// link's patience).
fn collect_within<T>(mut run: Run<T>, limit: Duration) -> Option<(Run<T>, Collected<T::Output>)>
where
    T: Task + 'static,
    T::Output: Send,
{
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let mut outcomes = HashMap::new();
        let mut result = Ok(());
        for outcome in run.outcomes() {
            match outcome {
                Ok(outcome) => {
                    let seq = outcome.seq;
                    assert!(outcomes.insert(seq, outcome).is_none(), "task {seq} twice");
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        let _ = done.send((run, result.map(|()| outcomes)));
    });
    wait.recv_timeout(limit).ok()
}

#[test]
fn a_recorded_breakdown_of_an_absurd_delivery_number_is_no_panic() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Fault>::builder(&url, "absurd").open().unwrap();
    run.submit(&Fault::Sleep(1500)).unwrap();
    run.flush().unwrap();
    assert!(eventually(Duration::from_secs(10), || held_by(
        &url, "absurd", "node-a"
    )));
    a.kill9();
    // Garbage where the task's last breakdown is kept.
    let record = procpool::encode_value(&(u32::MAX, TaskError::Cancelled)).unwrap();
    let _: u64 = redis::cmd("HSET")
        .arg("pp:{absurd}:errors")
        .arg(0)
        .arg(record)
        .query(&mut connect(&url))
        .unwrap();
    let _b = AgentProcess::start(&url, "node-b", 1, LEASE);
    let (_, outcomes) = collect_within(run, Duration::from_secs(12))
        .expect("the agent that takes the task over does not die of the record");
    let outcomes = outcomes.unwrap();
    assert_eq!(outcomes[&0].result, Ok(1500));
    assert_eq!(outcomes[&0].node, "node-b");
}

#[test]
fn an_agent_holding_a_task_lives_through_a_server_restart_that_lost_every_key() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Fault>::builder(&url, "wiped").open().unwrap();
    run.submit(&Fault::Sleep(3000)).unwrap();
    run.flush().unwrap();
    assert!(eventually(Duration::from_secs(10), || held_by(
        &url, "wiped", "node-a"
    )));
    // No persistence: the server comes back empty while the agent holds the task.
    server.kill9().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.restart().unwrap();
    // Several renewals of the task's lease fall on the empty server meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    let mut after = Run::<Square>::builder(&url, "after-wipe").open().unwrap();
    after.submit(&Square(7)).unwrap();
    let (_, outcomes) = collect_within(after, Duration::from_secs(12))
        .expect("the agent that held a task of the lost run still serves");
    assert_eq!(outcomes.unwrap()[&0].result, Ok(49));
}

#[test]
fn a_run_whose_keys_are_garbage_does_not_stop_the_agent_serving_the_others() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut con = connect(&url);
    // Two runs listed for agents whose keys hold no run: a task stream that is a
    // string, settings that are a string.
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg("pp:runs")
        .arg("bad-tasks")
        .arg("bad-meta")
        .ignore()
        .cmd("SET")
        .arg("pp:{bad-tasks}:tasks")
        .arg("x")
        .ignore()
        .cmd("SET")
        .arg("pp:{bad-meta}:meta")
        .arg("x")
        .ignore()
        .query(&mut con)
        .unwrap();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    std::thread::sleep(Duration::from_millis(1000));
    let mut run = Run::<Square>::builder(&url, "good").open().unwrap();
    for n in 0..3 {
        run.submit(&Square(n)).unwrap();
    }
    let (_, outcomes) =
        collect_within(run, Duration::from_secs(10)).expect("the agent serves the good run");
    let outcomes = outcomes.unwrap();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[&2].result, Ok(4));
}

#[test]
fn a_submitter_whose_run_is_lost_gets_an_error_not_an_endless_wait() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    // No agent: the task waits on the server when the server loses it.
    let mut run = Run::<Square>::builder(&url, "lost-run")
        .patience(Duration::from_secs(5))
        .open()
        .unwrap();
    run.submit(&Square(2)).unwrap();
    run.flush().unwrap();
    server.kill9().unwrap();
    server.restart().unwrap();
    let (_, collected) = collect_within(run, Duration::from_secs(8))
        .expect("outcomes() ends when the run is gone from the server");
    let error = collected.unwrap_err();
    assert!(error.is_no_such_run(), "{error}");

    // The same when another submitter collected the run and its keys expired before
    // this one read.
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut first = Run::<Square>::builder(&url, "expired")
        .expire_after(Duration::from_secs(1))
        .open()
        .unwrap();
    first.submit(&Square(3)).unwrap();
    first.flush().unwrap();
    let late = Run::<Square>::builder(&url, "expired")
        .patience(Duration::from_secs(5))
        .attach()
        .unwrap();
    assert_eq!(collect(&mut first)[&0].result, Ok(9));
    let mut con = connect(&url);
    assert!(eventually(Duration::from_secs(5), || {
        redis::cmd("EXISTS")
            .arg("pp:{expired}:outcomes")
            .query::<u64>(&mut con)
            .unwrap()
            == 0
    }));
    let (_, collected) = collect_within(late, Duration::from_secs(8))
        .expect("outcomes() ends when the run's keys expired");
    let error = collected.unwrap_err();
    assert!(error.is_no_such_run(), "{error}");
}

#[test]
fn an_agent_told_to_stop_keeps_the_leases_of_the_tasks_it_finishes() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let lease = LEASE;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let agent = procpool_cluster::Agent::builder(url.as_str())
            .node("home")
            .lease(lease)
            .pool(procpool::Pool::builder().workers(1))
            .build()
            .unwrap();
        let serving = scope.spawn(|| agent.serve_until(&stop));
        let mut run = Run::<Fault>::builder(&url, "stopping").open().unwrap();
        run.submit(&Fault::Sleep(3500)).unwrap();
        run.flush().unwrap();
        assert!(eventually(Duration::from_secs(10), || held_by(
            &url, "stopping", "home"
        )));
        // Stopping: the agent finishes what it holds, and it still lives.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _b = AgentProcess::start(&url, "node-b", 1, lease);
        let mut taken_over = false;
        let _ = eventually(Duration::from_secs(4), || {
            taken_over |= held_by(&url, "stopping", "node-b");
            taken_over
        });
        assert!(!taken_over, "a task of a living agent went to another");
        let outcomes = collect(&mut run);
        assert_eq!(outcomes[&0].node, "home");
        assert_eq!(outcomes[&0].attempts, 1);
        serving.join().unwrap().unwrap();
    });
}

#[test]
fn a_late_crash_on_a_lost_agent_does_not_take_its_task_from_the_agent_now_running_it() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let marker = server.dir().join("first-run");
    let mut run = Run::<CrashLateFirst>::builder(&url, "stolen")
        .max_deliveries(2)
        .open()
        .unwrap();
    run.submit(&CrashLateFirst {
        marker,
        crash_after_ms: 2500,
        ok_after_ms: 4000,
    })
    .unwrap();
    run.flush().unwrap();
    assert!(eventually(Duration::from_secs(10), || held_by(
        &url, "stolen", "node-a"
    )));
    let taken = Instant::now();
    // Frozen: its lease lapses and node-b takes the task over (delivery 2), while
    // node-a's worker goes on and crashes at 2.5 s.
    a.signal(Signal::SIGSTOP);
    let _b = AgentProcess::start(&url, "node-b", 1, LEASE);
    assert!(eventually(Duration::from_secs(10), || held_by(
        &url, "stolen", "node-b"
    )));
    std::thread::sleep(
        (taken + Duration::from_millis(3000)).saturating_duration_since(Instant::now()),
    );
    // node-a wakes to its worker's crash: its release must not touch node-b's delivery.
    a.signal(Signal::SIGCONT);
    let outcomes = collect(&mut run);
    assert_eq!(outcomes[&0].result, Ok(1), "{:?}", outcomes[&0]);
    assert_eq!(outcomes[&0].node, "node-b");
    assert_eq!(outcomes[&0].attempts, 2);
}

#[test]
fn an_agent_whose_pool_cannot_start_workers_stops_rather_than_poison_every_task() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut broken = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "broken_agent_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(BROKEN_URL, &url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let it connect before the tasks come, so that it takes the first ones.
    std::thread::sleep(Duration::from_millis(500));
    let mut run = Run::<Fault>::builder(&url, "burnt")
        .max_deliveries(3)
        .open()
        .unwrap();
    for n in 0..6 {
        run.submit(&Fault::Ok(n)).unwrap();
    }
    run.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _b = AgentProcess::start(&url, "node-b", 1, LEASE);
    let collected = collect_within(run, Duration::from_secs(12));
    let mut status = None;
    let _ = eventually(Duration::from_secs(5), || {
        status = broken.try_wait().unwrap();
        status.is_some()
    });
    let _ = broken.kill();
    let _ = broken.wait();
    let (_, outcomes) = collected.expect("every task gets an outcome");
    let outcomes = outcomes.unwrap();
    assert_eq!(outcomes.len(), 6);
    for n in 0..6 {
        assert_eq!(outcomes[&n].result, Ok(n), "{:?}", outcomes[&n]);
        assert_eq!(outcomes[&n].node, "node-b");
        // At most the one delivery the broken agent took and released.
        assert!(outcomes[&n].attempts <= 2, "{:?}", outcomes[&n]);
    }
    // It stopped serving, with an error.
    assert_eq!(status.and_then(|s| s.code()), Some(3));
}

#[test]
fn two_submitters_opening_one_new_run_at_once_agree_on_its_type() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    for trial in 0..20 {
        let id = format!("race-{trial}");
        let barrier = std::sync::Barrier::new(2);
        let (square, fault) = std::thread::scope(|scope| {
            let square = scope.spawn(|| {
                barrier.wait();
                Run::<Square>::builder(&url, &id).open().map(|_| ())
            });
            let fault = scope.spawn(|| {
                barrier.wait();
                Run::<Fault>::builder(&url, &id).open().map(|_| ())
            });
            (square.join().unwrap(), fault.join().unwrap())
        });
        // One made the run; the other was refused for its type, and nothing else.
        let refused = |result: &Result<(), ClusterError>| {
            matches!(result, Err(ClusterError::OtherTask { .. }))
        };
        assert!(
            (square.is_ok() && refused(&fault)) || (fault.is_ok() && refused(&square)),
            "trial {trial}: {square:?} and {fault:?}"
        );
    }
}

#[test]
fn an_agent_with_a_shorter_lease_leaves_a_living_agent_s_task_alone() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, Duration::from_millis(3000));
    let mut run = Run::<Fault>::builder(&url, "leases").open().unwrap();
    run.submit(&Fault::Sleep(4000)).unwrap();
    run.flush().unwrap();
    assert!(eventually(Duration::from_secs(10), || held_by(
        &url, "leases", "node-a"
    )));
    let _b = AgentProcess::start(&url, "node-b", 1, Duration::from_millis(300));
    let mut taken_over = false;
    let _ = eventually(Duration::from_secs(3), || {
        taken_over |= held_by(&url, "leases", "node-b");
        taken_over
    });
    assert!(!taken_over, "a task of a living agent went to another");
    let outcomes = collect(&mut run);
    assert_eq!(outcomes[&0].node, "node-a");
    assert_eq!(outcomes[&0].attempts, 1);
}

#[test]
fn an_agent_serving_several_runs_takes_from_each_in_turn() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut big = Run::<Fault>::builder(&url, "big").open().unwrap();
    for _ in 0..40 {
        big.submit(&Fault::Sleep(100)).unwrap();
    }
    big.flush().unwrap();
    let mut small: Vec<Run<Fault>> = (0..3)
        .map(|n| {
            let mut run = Run::<Fault>::builder(&url, format!("small-{n}"))
                .open()
                .unwrap();
            run.submit(&Fault::Sleep(10)).unwrap();
            run.flush().unwrap();
            run
        })
        .collect();
    // One worker for 4 s of the big run's tasks: each small run's task comes in turn,
    // not after the big run is through.
    let started = Instant::now();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    for run in &mut small {
        assert_eq!(collect(run)[&0].result, Ok(10));
    }
    let waited = started.elapsed();
    let outcomes = collect(&mut big);
    assert_eq!(outcomes.len(), 40);
    assert!(
        waited < started.elapsed() / 2,
        "the small runs waited {waited:?} of {:?}",
        started.elapsed()
    );
}

#[test]
fn tasks_sent_after_the_server_lost_their_run_are_an_error_not_an_endless_wait() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    let mut run = Run::<Square>::builder(&url, "sent-late")
        .patience(Duration::from_secs(5))
        .open()
        .unwrap();
    // Numbered, not sent yet, when the server comes back empty.
    run.submit(&Square(2)).unwrap();
    server.kill9().unwrap();
    server.restart().unwrap();
    let (_, collected) = collect_within(run, Duration::from_secs(8))
        .expect("outcomes() ends when the run is gone from the server");
    let error = collected.unwrap_err();
    assert!(error.is_no_such_run(), "{error}");
    // Nothing of the lost run was made again.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("pp:{sent-late}:*")
        .query(&mut connect(&url))
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn tasks_submitted_to_a_collected_run_are_served() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Square>::builder(&url, "again").open().unwrap();
    run.submit(&Square(2)).unwrap();
    assert_eq!(collect(&mut run)[&0].result, Ok(4));
    // Collected (agents drop the run within half a second); more tasks come later.
    std::thread::sleep(Duration::from_millis(1500));
    run.submit(&Square(3)).unwrap();
    let (mut run, outcomes) =
        collect_within(run, Duration::from_secs(8)).expect("the run is served again");
    assert_eq!(outcomes.unwrap()[&1].result, Ok(9));
    // Collected again: expiring again.
    let ttl: i64 = redis::cmd("TTL")
        .arg("pp:{again}:tasks")
        .query(&mut connect(&url))
        .unwrap();
    assert!(ttl > 0, "ttl {ttl}");
    assert!(run.is_collected());
    assert!(run.outcomes().next().is_none());
}

#[test]
fn a_run_whose_count_is_garbage_is_refused_not_a_panic() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    drop(Run::<Square>::builder(&url, "counted").open().unwrap());
    for garbage in [u64::MAX.to_string(), "many".to_owned()] {
        let _: u64 = redis::cmd("HSET")
            .arg("pp:{counted}:meta")
            .arg("submitted")
            .arg(&garbage)
            .query(&mut connect(&url))
            .unwrap();
        let opened = std::panic::catch_unwind(|| {
            let mut run = Run::<Square>::builder(&url, "counted").attach()?;
            run.submit(&Square(1))?;
            run.flush()
        });
        let error = opened
            .expect("no panic on a count read from the server")
            .expect_err("a count that is no count is refused");
        assert!(
            matches!(&error, ClusterError::Garbled { run, .. } if run == "counted"),
            "{garbage}: {error:?}"
        );
    }
}

#[test]
fn a_count_garbled_after_attaching_is_refused_at_the_next_send() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut run = Run::<Square>::builder(&url, "recounted").open().unwrap();
    run.submit(&Square(1)).unwrap();
    run.flush().unwrap();
    run.submit(&Square(2)).unwrap();
    // Text that is no count, and bytes that are not even text.
    for garbage in [b"many".to_vec(), vec![0xff, 0xfe]] {
        let _: u64 = redis::cmd("HSET")
            .arg("pp:{recounted}:meta")
            .arg("submitted")
            .arg(&garbage)
            .query(&mut connect(&url))
            .unwrap();
        let error = run
            .flush()
            .expect_err("a count that is no count is refused");
        assert!(
            matches!(&error, ClusterError::Garbled { run, .. } if run == "recounted"),
            "{garbage:?}: {error:?}"
        );
        let tasks: u64 = redis::cmd("XLEN")
            .arg("pp:{recounted}:tasks")
            .query(&mut connect(&url))
            .unwrap();
        assert_eq!(tasks, 1, "nothing more was sent");
    }
}

#[test]
fn a_task_the_agent_knows_by_name_only_or_not_at_all_ends_in_its_typed_error_once() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Square>::builder(&url, "types").open().unwrap();
    run.submit(&Square(2)).unwrap();
    run.flush().unwrap();
    let square = procpool::EncodedTask::encode(&Square(1)).unwrap();
    let mut con = connect(&url);
    for (seq, name, types) in [
        (5, square.name(), square.types() ^ 1),
        (6, "review::NoSuchTask", square.types()),
    ] {
        let _: String = redis::cmd("XADD")
            .arg("pp:{types}:tasks")
            .arg("*")
            .arg("v")
            .arg("1")
            .arg("seq")
            .arg(seq)
            .arg("name")
            .arg(name)
            .arg("types")
            .arg(format!("{types:016x}"))
            .arg("input")
            .arg(square.input())
            .query(&mut con)
            .unwrap();
    }
    // The agent lives on: a real task after them runs.
    run.submit(&Square(3)).unwrap();
    let outcomes = collect(&mut run);
    assert_eq!(outcomes[&1].result, Ok(9));
    let written: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("pp:{types}:outcomes")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let error_of = |seq: &str| -> Vec<TaskError> {
        written
            .ids
            .iter()
            .filter(|e| e.get::<String>("seq").as_deref() == Some(seq))
            .map(|e| procpool::decode_value(&e.get::<Vec<u8>>("err").unwrap()).unwrap())
            .collect()
    };
    // Final, not released to other agents: one outcome each, on the first delivery.
    assert!(
        matches!(error_of("5")[..], [TaskError::WrongTypes { .. }]),
        "{:?}",
        error_of("5")
    );
    assert!(
        matches!(error_of("6")[..], [TaskError::UnknownTask { .. }]),
        "{:?}",
        error_of("6")
    );
}

/// Returns this many bytes: a big output for a small input.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Big(usize);

impl Task for Big {
    const NAME: &'static str = "review::Big";
    type Output = Vec<u8>;
    fn run(self) -> Result<Vec<u8>, BoxError> {
        Ok(vec![7; self.0])
    }
}

procpool::register!(Big);

/// Lowers the most a string may hold on the server at `url` to 1 MiB.
fn limit_strings_to_a_mebibyte(url: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("proto-max-bulk-len")
        .arg("1mb")
        .query(&mut connect(url))
        .unwrap();
}

#[test]
fn an_output_too_big_for_the_server_is_that_task_s_error_and_holds_up_no_other() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    limit_strings_to_a_mebibyte(&url);
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Big>::builder(&url, "huge-out").open().unwrap();
    let huge = run.submit(&Big(2 << 20)).unwrap();
    let small = run.submit(&Big(10)).unwrap();
    let (_, outcomes) = collect_within(run, Duration::from_secs(12))
        .expect("every task has its outcome, none held up for the agent's patience");
    let outcomes = outcomes.unwrap();
    assert_eq!(outcomes[&small].result, Ok(vec![7; 10]));
    match &outcomes[&huge].result {
        Err(TaskError::Codec { message, .. }) => {
            assert!(message.contains("limit"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(outcomes[&huge].attempts, 1);
}

#[test]
fn a_task_too_big_for_the_server_is_refused_at_submit_and_the_others_go() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    limit_strings_to_a_mebibyte(&url);
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Fault>::builder(&url, "huge-in")
        .patience(Duration::from_secs(3))
        .open()
        .unwrap();
    let fine = run.submit(&Fault::Ok(1)).unwrap();
    let error = run
        .submit(&Fault::Panic("x".repeat(2 << 20)))
        .expect_err("a task the server cannot hold is refused");
    assert!(!error.is_unreachable(), "{error}");
    assert!(error.to_string().contains("encode"), "{error}");
    let (_, outcomes) = collect_within(run, Duration::from_secs(8)).expect("the rest is served");
    let outcomes = outcomes.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[&fine].result, Ok(1));
}

/// Adds an entry whose only field's name (and value) are bytes that are not UTF-8.
fn add_binary_entry(url: &str, stream: &str) {
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg(&[0xffu8, 0xfe][..])
        .arg(&[0x01u8, 0x02, 0xff][..])
        .query(&mut connect(url))
        .unwrap();
}

#[test]
fn a_field_name_that_is_not_utf8_is_a_malformed_entry_read_fresh_or_taken_over() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut run = Run::<Square>::builder(&url, "binary").open().unwrap();
    // A consumer that is gone holds garbage: the agent takes it over once the ghost's
    // lease has run out.
    add_binary_entry(&url, "pp:{binary}:tasks");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("agents")
        .arg("ghost/1/lease=200ms")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg("pp:{binary}:tasks")
        .arg(">")
        .query(&mut connect(&url))
        .unwrap();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    // Garbage read fresh, tasks behind it, and garbage among the outcomes.
    add_binary_entry(&url, "pp:{binary}:tasks");
    run.submit(&Square(2)).unwrap();
    run.submit(&Square(3)).unwrap();
    run.flush().unwrap();
    add_binary_entry(&url, "pp:{binary}:outcomes");
    let mut dead = Vec::new();
    eventually(Duration::from_secs(15), || {
        dead = run.dead_letters().unwrap();
        dead.len() >= 2
    });
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter()
            .all(|d| d.seq.is_none() && d.reason.contains("`seq`")),
        "{dead:?}"
    );
    let (run, outcomes) = collect_within(run, Duration::from_secs(20))
        .expect("the agent lives through the entries and serves the run");
    let outcomes = outcomes.expect("the submitter reads past the garbage outcome");
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[&0].result, Ok(4));
    assert_eq!(outcomes[&1].result, Ok(9));
    assert_eq!(run.garbage().len(), 1, "{:?}", run.garbage());
}

#[test]
fn tasks_released_by_crashes_go_before_new_tasks_on_a_busy_agent() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<SleepOrCrashOnce>::builder(&url, "backlog")
        .open()
        .unwrap();
    // One task in eight crashes once (released, to run again); the rest take 5 ms.
    let crashes = |seq: u64| seq % 8 == 3;
    for seq in 0..400 {
        let marker = crashes(seq).then(|| server.dir().join(format!("crash-{seq}")));
        run.submit(&SleepOrCrashOnce { ms: 5, marker }).unwrap();
    }
    let mut order = Vec::new();
    for outcome in run.outcomes() {
        let outcome = outcome.expect("the server answers");
        let released = crashes(outcome.seq);
        assert_eq!(outcome.result, Ok(5), "task {}", outcome.seq);
        assert_eq!(outcome.attempts, if released { 2 } else { 1 });
        order.push(released);
    }
    assert_eq!(order.len(), 400);
    // Once the new tasks are done, few released ones may be left: those released in
    // the agent's last look or two. A busy agent that takes released tasks only now
    // and then leaves most of them to the end.
    let last_new = order.iter().rposition(|released| !released).unwrap();
    let left = order.len() - 1 - last_new;
    assert!(
        left <= 12,
        "{left} of 50 released tasks ran after every new one"
    );
}

#[test]
fn names_and_settings_that_are_not_utf8_skip_a_run_and_no_agent_is_lost() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut con = connect(&url);
    // A run list member that is not UTF-8.
    let _: u64 = redis::cmd("SADD")
        .arg("pp:runs")
        .arg(&[0xffu8, 0xfe][..])
        .query(&mut con)
        .unwrap();
    // A run whose cap is not UTF-8, and a run held by a consumer whose name is not.
    let mut capped = Run::<Square>::builder(&url, "bad-cap").open().unwrap();
    let _: u64 = redis::cmd("HSET")
        .arg("pp:{bad-cap}:meta")
        .arg("cap")
        .arg(&[0xffu8][..])
        .query(&mut con)
        .unwrap();
    let mut held = Run::<Square>::builder(&url, "bad-consumer").open().unwrap();
    held.submit(&Square(5)).unwrap();
    held.flush().unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("agents")
        .arg(&[0xffu8, 0xfe][..])
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg("pp:{bad-consumer}:tasks")
        .arg(">")
        .query(&mut con)
        .unwrap();
    let mut agent = AgentProcess::start(&url, "node-a", 1, LEASE);
    capped.submit(&Square(2)).unwrap();
    let (_, outcomes) = collect_within(capped, Duration::from_secs(15))
        .expect("the agent serves the run whose cap is garbage, with the default cap");
    assert_eq!(outcomes.unwrap()[&0].result, Ok(4));
    // The run with the odd consumer: its listings do not read, it is skipped, and the
    // agent goes on serving the others through several looks.
    std::thread::sleep(LEASE * 2);
    let mut good = Run::<Square>::builder(&url, "good").open().unwrap();
    good.submit(&Square(3)).unwrap();
    let (_, outcomes) = collect_within(good, Duration::from_secs(15))
        .expect("the agent lives and serves a new run");
    assert_eq!(outcomes.unwrap()[&0].result, Ok(9));
    assert!(agent.is_running(), "the agent is alive");
    drop(held);
}
