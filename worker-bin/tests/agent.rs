//! The worker binary's agent mode, from outside: `procpool-worker agent <url>` serves
//! a run of the tasks it carries, against a real `redis-server`.

#[path = "../../cluster/tests/support/server.rs"]
#[allow(dead_code)]
mod server;

use std::process::{Command, Stdio};

use procpool_cluster::Run;
use procpool_worker::{Fault, Square};

#[test]
fn the_worker_binary_serves_as_a_node_agent() {
    let redis = server::RedisServer::start().unwrap();
    let url = redis.url();
    let _agent = Killed(
        Command::new(env!("CARGO_BIN_EXE_procpool-worker"))
            .args(["agent", &url, "--node", "bin-node", "--workers", "2"])
            .args(["--lease-ms", "1000"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut squares = Run::<Square>::builder(&url, "bin-squares").open().unwrap();
    for n in 0..50 {
        squares.submit(&Square(n)).unwrap();
    }
    let outcomes: Vec<_> = squares.outcomes().map(Result::unwrap).collect();
    assert_eq!(outcomes.len(), 50);
    for outcome in &outcomes {
        assert_eq!(outcome.result, Ok(outcome.seq * outcome.seq));
        assert_eq!(outcome.node, "bin-node");
    }
    let mut faults = Run::<Fault>::builder(&url, "bin-faults").open().unwrap();
    faults.submit(&Fault::Abort).unwrap();
    let outcome = faults.outcomes().next().unwrap().unwrap();
    match outcome.result {
        Err(procpool::TaskError::Poisoned {
            attempts: 3,
            last_error,
        }) => assert_eq!(last_error.signal(), Some(6), "{last_error}"),
        other => panic!("{other:?}"),
    }
}

/// A child process killed and reaped on drop, a failed assertion included.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_bad_agent_command_line_is_refused_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_procpool-worker"))
        .args(["agent", "--workers", "2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("URL comes first"), "{stderr}");
}
