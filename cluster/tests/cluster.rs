//! The cluster mode end to end: a real `redis-server` per test, agents as real
//! processes (this binary run as an agent), real faults.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use procpool::TaskError;
use procpool_cluster::Run;
use procpool_worker::{CrashOnce, Fault, Square};
use support::agent::AgentProcess;
use support::server::RedisServer;
use support::watch::{collect, connect, eventually, held_by, pending_by_consumer};

procpool::test_support!();

#[test]
fn agent_entry() {
    support::agent::agent_entry();
}

const LEASE: Duration = Duration::from_millis(1000);

#[test]
fn every_task_gets_exactly_one_outcome_across_two_agents() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 2, LEASE);
    let _b = AgentProcess::start(&url, "node-b", 2, LEASE);
    let mut run = Run::<Square>::builder(&url, "squares").open().unwrap();
    for n in 0..300 {
        assert_eq!(run.submit(&Square(n)).unwrap(), n);
    }
    let outcomes = collect(&mut run);
    assert_eq!(outcomes.len(), 300);
    for (seq, outcome) in &outcomes {
        assert_eq!(outcome.result, Ok(seq * seq));
        assert_eq!(outcome.attempts, 1);
        assert!(["node-a", "node-b"].contains(&outcome.node.as_str()));
    }
    assert_eq!(run.duplicates(), 0);
    assert!(run.garbage().is_empty());
}

#[test]
fn a_crash_is_released_at_once_and_poisoned_at_the_cap_while_the_rest_goes_on() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 2, Duration::from_secs(30));
    let mut run = Run::<Fault>::builder(&url, "faults")
        .max_deliveries(3)
        .open()
        .unwrap();
    let started = Instant::now();
    let segfault = run.submit(&Fault::Segfault).unwrap();
    let fine: Vec<u64> = (0..20)
        .map(|n| run.submit(&Fault::Ok(n)).unwrap())
        .collect();
    let outcomes = collect(&mut run);
    // Released at once, not after the 30 s lease.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    let crashed = &outcomes[&segfault];
    assert_eq!(crashed.node, "node-a");
    assert_eq!(crashed.attempts, 3);
    match &crashed.result {
        Err(TaskError::Poisoned {
            attempts: 3,
            last_error,
        }) => assert_eq!(last_error.signal(), Some(11), "{last_error}"),
        other => panic!("{other:?}"),
    }
    for (n, seq) in fine.iter().enumerate() {
        assert_eq!(outcomes[seq].result, Ok(n as u64));
    }
    let dead = run.dead_letters().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].seq, Some(segfault));
    assert!(dead[0].error.as_ref().is_some_and(TaskError::is_poisoned));
}

#[test]
fn a_crash_that_another_delivery_cures_ends_in_the_output_with_its_count() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, Duration::from_secs(30));
    let marker = server.dir().join("crashed-once");
    let mut run = Run::<CrashOnce>::builder(&url, "cure").open().unwrap();
    run.submit(&CrashOnce(marker)).unwrap();
    let outcomes = collect(&mut run);
    assert_eq!(outcomes[&0].result, Ok(1));
    assert_eq!(outcomes[&0].attempts, 2);
    assert!(run.dead_letters().unwrap().is_empty());
}

#[test]
fn an_agent_fetches_only_for_the_room_it_has() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Fault>::builder(&url, "room").open().unwrap();
    for _ in 0..6 {
        run.submit(&Fault::Sleep(300)).unwrap();
    }
    run.flush().unwrap();
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let held: usize = pending_by_consumer(&url, "room").values().sum();
        most = most.max(held);
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(most, 1, "one worker, 300 ms tasks: one task held at a time");
    assert_eq!(collect(&mut run).len(), 6);
}

#[test]
fn a_long_task_stays_with_its_living_agent_past_many_leases() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let lease = Duration::from_millis(300);
    let _a = AgentProcess::start(&url, "node-a", 1, lease);
    let _b = AgentProcess::start(&url, "node-b", 1, lease);
    let mut run = Run::<Fault>::builder(&url, "long").open().unwrap();
    // Ten leases long.
    run.submit(&Fault::Sleep(3000)).unwrap();
    let outcomes = collect(&mut run);
    assert_eq!(outcomes[&0].result, Ok(3000));
    assert_eq!(outcomes[&0].attempts, 1, "never handed to the second agent");
    assert_eq!(run.duplicates(), 0);
}

#[test]
fn a_killed_agent_s_task_is_taken_up_by_another_once_its_lease_runs_out() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Fault>::builder(&url, "lost").open().unwrap();
    run.submit(&Fault::Sleep(1500)).unwrap();
    run.flush().unwrap();
    assert!(eventually(Duration::from_secs(20), || held_by(
        &url, "lost", "node-a"
    )));
    a.kill9();
    let killed = Instant::now();
    let _b = AgentProcess::start(&url, "node-b", 1, LEASE);
    let outcomes = collect(&mut run);
    let outcome = &outcomes[&0];
    assert_eq!(outcome.result, Ok(1500));
    assert_eq!(outcome.node, "node-b");
    assert_eq!(outcome.attempts, 2);
    assert!(killed.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_stopped_agent_s_task_is_taken_over_and_its_late_outcome_dropped() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Fault>::builder(&url, "frozen").open().unwrap();
    run.submit(&Fault::Sleep(1200)).unwrap();
    run.flush().unwrap();
    assert!(eventually(Duration::from_secs(20), || held_by(
        &url, "frozen", "node-a"
    )));
    // Frozen past its lease: stops renewing, as a machine that hangs.
    a.signal(Signal::SIGSTOP);
    let _b = AgentProcess::start(&url, "node-b", 1, LEASE);
    let outcomes = collect(&mut run);
    assert_eq!(outcomes[&0].node, "node-b");
    assert_eq!(outcomes[&0].attempts, 2);
    a.signal(Signal::SIGCONT);
    // The first agent wakes and writes its own outcome late: a duplicate, dropped by
    // a submitter that reads the run again.
    let mut again = Run::<Fault>::builder(&url, "frozen").attach().unwrap();
    let _ = eventually(Duration::from_secs(10), || {
        redis::cmd("XLEN")
            .arg("pp:{frozen}:outcomes")
            .query::<u64>(&mut connect(&url))
            .unwrap()
            >= 2
    });
    let reread = collect(&mut again);
    assert_eq!(reread.len(), 1);
}

#[test]
fn a_submitter_that_stops_re_attaches_and_collects_every_outcome_once() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 2, LEASE);
    {
        let mut run = Run::<Square>::builder(&url, "resume").open().unwrap();
        for n in 0..40 {
            run.submit(&Square(n)).unwrap();
        }
        let first: Vec<_> = run.outcomes().take(5).collect();
        assert_eq!(first.len(), 5);
        // Dropped here: the submitter stops.
    }
    let mut run = Run::<Square>::builder(&url, "resume").attach().unwrap();
    assert_eq!(run.submitted(), 40);
    let outcomes = collect(&mut run);
    assert_eq!(outcomes.len(), 40);
    for (seq, outcome) in &outcomes {
        assert_eq!(outcome.result, Ok(seq * seq));
    }
    // Collected: the keys expire and agents stop serving the run.
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg("pp:{resume}:outcomes")
        .query(&mut con)
        .unwrap();
    assert!(ttl > 0, "ttl {ttl}");
    let member: bool = redis::cmd("SISMEMBER")
        .arg("pp:runs")
        .arg("resume")
        .query(&mut con)
        .unwrap();
    assert!(!member);
    // Another type under the same run id is refused.
    let error = Run::<Fault>::builder(&url, "resume").open().unwrap_err();
    assert!(
        error.to_string().contains("procpool_worker::Square"),
        "{error}"
    );
    let error = Run::<Fault>::builder(&url, "nothing-here")
        .attach()
        .unwrap_err();
    assert!(error.is_no_such_run(), "{error}");
}

#[test]
fn garbage_in_the_streams_is_a_typed_error_for_that_entry_and_no_agent_is_lost() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Square>::builder(&url, "garbage").open().unwrap();
    run.submit(&Square(3)).unwrap();
    run.flush().unwrap();
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let tasks = "pp:{garbage}:tasks";
    // No task number at all; a task number with nothing else; a bad version; bytes
    // that are no task of that name.
    let _: String = redis::cmd("XADD")
        .arg(tasks)
        .arg("*")
        .arg("junk")
        .arg("x")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(tasks)
        .arg("*")
        .arg("seq")
        .arg(7)
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(tasks)
        .arg("*")
        .arg("seq")
        .arg(8)
        .arg("v")
        .arg("99")
        .query(&mut con)
        .unwrap();
    let square = procpool::EncodedTask::encode(&Square(1)).unwrap();
    let _: String = redis::cmd("XADD")
        .arg(tasks)
        .arg("*")
        .arg("v")
        .arg("1")
        .arg("seq")
        .arg(9)
        .arg("name")
        .arg(square.name())
        .arg("types")
        .arg(format!("{:016x}", square.types()))
        .arg("input")
        .arg(vec![0xffu8; 12])
        .query(&mut con)
        .unwrap();
    // Garbage among the outcomes too.
    let _: String = redis::cmd("XADD")
        .arg("pp:{garbage}:outcomes")
        .arg("*")
        .arg("seq")
        .arg("zzz")
        .query(&mut con)
        .unwrap();
    // A real task after the garbage still runs: the agent lives on.
    run.submit(&Square(4)).unwrap();
    let outcomes = collect(&mut run);
    assert_eq!(outcomes[&0].result, Ok(9));
    assert_eq!(outcomes[&1].result, Ok(16));
    assert_eq!(outcomes.len(), 2);
    // The entries that are no tasks went to the dead letters, each with its reason.
    let dead = run.dead_letters().unwrap();
    assert_eq!(dead.len(), 3, "{dead:?}");
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert!(reasons[0].contains("no field `seq`"), "{reasons:?}");
    assert_eq!(dead[1].seq, Some(7));
    assert!(reasons[1].contains("no field `v`"), "{reasons:?}");
    assert_eq!(dead[2].seq, Some(8));
    assert!(reasons[2].contains("version"), "{reasons:?}");
    // Bytes that are no task of the name ran, and ended in a codec error from the
    // worker: that entry's outcome (of a task this submitter never submitted).
    let written: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("pp:{garbage}:outcomes")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let nine = written
        .ids
        .iter()
        .find(|e| e.get::<String>("seq").as_deref() == Some("9"))
        .expect("an outcome for the entry numbered 9");
    let error: Vec<u8> = nine.get("err").expect("an error");
    let error: TaskError = procpool::decode_value(&error).unwrap();
    assert!(
        matches!(
            error,
            TaskError::Codec {
                side: procpool::Side::Worker,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        run.garbage().iter().any(|(_, why)| why.contains("`seq`")),
        "{:?}",
        run.garbage()
    );
}

#[test]
fn a_server_killed_and_restarted_from_its_append_only_file_loses_no_outcome() {
    let mut server = RedisServer::builder().appendonly(true).start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 2, LEASE);
    let _b = AgentProcess::start(&url, "node-b", 2, LEASE);
    let mut run = Run::<Fault>::builder(&url, "outage").open().unwrap();
    for n in 0..80 {
        run.submit(&Fault::Ok(n)).unwrap();
        run.submit(&Fault::Sleep(40)).unwrap();
    }
    run.flush().unwrap();
    let outcomes = std::thread::scope(|scope| {
        let collector = scope.spawn(|| collect(&mut run));
        std::thread::sleep(Duration::from_millis(400));
        let mut con = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let written: u64 = redis::cmd("XLEN")
            .arg("pp:{outage}:outcomes")
            .query(&mut con)
            .unwrap();
        // The server dies with the run under way.
        assert!(written < 160, "{written} outcomes before the kill");
        server.kill9().unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        server.restart().unwrap();
        collector.join().unwrap()
    });
    assert_eq!(outcomes.len(), 160);
    for (seq, outcome) in &outcomes {
        let expected = if seq % 2 == 0 { seq / 2 } else { 40 };
        assert_eq!(outcome.result, Ok(expected), "task {seq}");
    }
}

#[test]
fn a_timeout_set_at_submit_travels_with_the_task_and_is_final() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Fault>::builder(&url, "timeouts").open().unwrap();
    let limit = Duration::from_millis(400);
    let options = procpool::TaskOptions::new().timeout(limit);
    let hang = run.submit_with(&Fault::Hang, &options).unwrap();
    let quick = run.submit_with(&Fault::Ok(1), &options).unwrap();
    let outcomes = collect(&mut run);
    match &outcomes[&hang].result {
        Err(TaskError::TimedOut { after, .. }) => assert_eq!(*after, limit),
        other => panic!("{other:?}"),
    }
    // A timeout is the task's own ending: not released, not run again.
    assert_eq!(outcomes[&hang].attempts, 1);
    assert_eq!(outcomes[&quick].result, Ok(1));
}

#[test]
fn a_password_protected_server_serves_with_the_password_and_refuses_without() {
    let server = RedisServer::builder()
        .password("s3cret pass")
        .port(true)
        .start()
        .unwrap();
    let url = server.url();
    assert!(url.starts_with("redis://"), "{url}");
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Square>::builder(&url, "locked").open().unwrap();
    run.submit(&Square(5)).unwrap();
    assert_eq!(collect(&mut run)[&0].result, Ok(25));
    // Without the password: refused at once, a typed error, not a hang or a retry.
    let bare = url.replacen(":s3cret%20pass@", "", 1);
    assert!(!bare.contains("s3cret"), "{bare}");
    assert_ne!(bare, url);
    let started = Instant::now();
    let error = Run::<Square>::builder(&bare, "locked").open().unwrap_err();
    assert!(!error.is_unreachable(), "{error}");
    assert!(
        std::error::Error::source(&error)
            .is_some_and(|source| source.to_string().contains("NOAUTH")),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let error = procpool_cluster::Agent::builder(bare.as_str())
        .build()
        .unwrap_err();
    assert!(!error.is_unreachable(), "{error}");
}

#[cfg(feature = "tls")]
#[test]
fn a_tls_server_serves_runs_when_its_root_is_trusted_and_refuses_otherwise() {
    let server = RedisServer::builder().tls(true).start().unwrap();
    let url = server.url();
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    let ca = server.ca_cert().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let agent = procpool_cluster::Agent::builder(url.as_str())
            .node("tls-node")
            .tls_root_cert(ca.clone())
            .pool(procpool::Pool::builder().workers(1))
            .build()
            .unwrap();
        let serving = scope.spawn(|| agent.serve_until(&stop));
        let mut run = Run::<Square>::builder(&url, "tls")
            .tls_root_cert(ca.clone())
            .open()
            .unwrap();
        run.submit(&Square(6)).unwrap();
        let outcomes = collect(&mut run);
        assert_eq!(outcomes[&0].result, Ok(36));
        assert_eq!(outcomes[&0].node, "tls-node");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        serving.join().unwrap().unwrap();
    });
    // Not trusting the test CA (only the system's roots): refused at once, not
    // retried for the patience as an outage would be.
    let started = Instant::now();
    let error = Run::<Square>::builder(&url, "tls")
        .patience(Duration::from_secs(20))
        .open()
        .unwrap_err();
    assert!(!error.is_unreachable(), "{error:?}");
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert!(
        source.as_deref().is_some_and(|s| s.contains("certificate")),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The body of `submitter_entry`: submits `PP_SUBMIT_COUNT` sleeps of 20 ms to the run
/// `PP_SUBMIT_RUN` and collects their outcomes, until the test kills it.
fn submit_and_collect(url: &str) {
    let run_id = std::env::var("PP_SUBMIT_RUN").unwrap();
    let count: u64 = std::env::var("PP_SUBMIT_COUNT").unwrap().parse().unwrap();
    let mut run = Run::<Fault>::builder(url, run_id).open().unwrap();
    for _ in 0..count {
        run.submit(&Fault::Sleep(20)).unwrap();
    }
    for outcome in run.outcomes() {
        outcome.unwrap();
    }
}

#[test]
fn submitter_entry() {
    if let Ok(url) = std::env::var("PP_SUBMIT_URL") {
        submit_and_collect(&url);
    }
}

#[test]
fn a_killed_submitter_s_run_is_re_attached_and_every_outcome_collected_once() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 2, LEASE);
    let mut submitter = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "submitter_entry", "--nocapture"])
        .env("PP_SUBMIT_URL", &url)
        .env("PP_SUBMIT_RUN", "orphan")
        .env("PP_SUBMIT_COUNT", "100")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut outcomes_written = || {
        redis::cmd("XLEN")
            .arg("pp:{orphan}:outcomes")
            .query::<u64>(&mut con)
            .unwrap()
    };
    assert!(eventually(Duration::from_secs(30), || outcomes_written() >= 10));
    submitter.kill().unwrap();
    submitter.wait().unwrap();
    assert!(
        outcomes_written() < 100,
        "killed while its run was under way"
    );
    let mut run = Run::<Fault>::builder(&url, "orphan").attach().unwrap();
    assert_eq!(run.submitted(), 100);
    let outcomes = collect(&mut run);
    assert_eq!(outcomes.len(), 100);
    assert!(outcomes.values().all(|o| o.result == Ok(20)));
    assert_eq!(run.duplicates(), 0);
}

#[test]
fn a_task_whose_agents_keep_dying_is_poisoned_with_the_lost_agent_named() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let mut run = Run::<Fault>::builder(&url, "doomed")
        .max_deliveries(1)
        .open()
        .unwrap();
    run.submit(&Fault::Sleep(60_000)).unwrap();
    run.flush().unwrap();
    let mut owner = String::new();
    assert!(eventually(Duration::from_secs(20), || {
        let pending = pending_by_consumer(&url, "doomed");
        owner = pending.keys().next().cloned().unwrap_or_default();
        owner.starts_with("node-a/")
    }));
    a.kill9();
    let _b = AgentProcess::start(&url, "node-b", 1, LEASE);
    let outcomes = collect(&mut run);
    let outcome = &outcomes[&0];
    assert_eq!(
        outcome.node, "node-b",
        "written by the agent that gave it up"
    );
    assert_eq!(outcome.attempts, 1);
    assert_eq!(
        outcome.result,
        Err(TaskError::Poisoned {
            attempts: 1,
            last_error: Box::new(TaskError::AgentLost { agent: owner }),
        })
    );
    let dead = run.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("stopped renewing"),
        "{}",
        dead[0].reason
    );
}

#[test]
fn the_consumers_of_agents_gone_for_good_are_forgotten() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let lease = Duration::from_millis(150);
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut consumers = || -> Vec<String> {
        let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg("pp:{forget}:tasks")
            .arg("agents")
            .query(&mut con)
            .unwrap();
        reply.consumers.into_iter().map(|c| c.name).collect()
    };
    let mut a = AgentProcess::start(&url, "node-a", 1, lease);
    let mut run = Run::<Square>::builder(&url, "forget").open().unwrap();
    run.submit(&Square(2)).unwrap();
    run.flush().unwrap();
    assert!(eventually(Duration::from_secs(20), || consumers()
        .iter()
        .any(|c| c.starts_with("node-a/"))));
    a.kill9();
    let _b = AgentProcess::start(&url, "node-b", 1, lease);
    // A consumer is made by the first read that gets an entry.
    run.submit(&Square(3)).unwrap();
    run.flush().unwrap();
    // Twenty leases of silence (3 s), then the next look: node-a's consumer is gone,
    // node-b's stays.
    assert!(eventually(Duration::from_secs(30), || {
        let names = consumers();
        !names.iter().any(|c| c.starts_with("node-a/"))
            && names.iter().any(|c| c.starts_with("node-b/"))
    }));
    let outcomes = collect(&mut run);
    assert_eq!(
        (&outcomes[&0].result, &outcomes[&1].result),
        (&Ok(4), &Ok(9))
    );
}

#[test]
fn a_task_s_own_retries_do_not_rerun_it_inside_the_agent() {
    use procpool::Call;
    use procpool_worker::functions::crash_logged;
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let _a = AgentProcess::start(&url, "node-a", 1, LEASE);
    let log = server.dir().join("runs.log");
    let mut run = Run::<Call<crash_logged>>::builder(&url, "own-retries")
        .max_deliveries(2)
        .open()
        .unwrap();
    run.submit(&Call::new(crash_logged, (log.clone(), 7)))
        .unwrap();
    let outcomes = collect(&mut run);
    assert!(outcomes[&0].result.as_ref().unwrap_err().is_poisoned());
    // Two deliveries, one run each: the task's `retries = 2` is the local pool's
    // business, not the cluster's.
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(runs.lines().count(), 2, "{runs}");
}
