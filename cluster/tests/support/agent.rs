//! Node agents as real processes: the test binary runs itself as an agent (the test
//! `agent_entry` of each test file serves when `PP_AGENT_URL` is set), so a test can
//! SIGKILL or SIGSTOP one like a lost machine.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The environment variables an agent process reads.
pub(crate) const URL: &str = "PP_AGENT_URL";
pub(crate) const NODE: &str = "PP_AGENT_NODE";
pub(crate) const WORKERS: &str = "PP_AGENT_WORKERS";
pub(crate) const LEASE_MS: &str = "PP_AGENT_LEASE_MS";

/// A running agent process; killed (SIGKILL) and reaped on drop.
pub(crate) struct AgentProcess {
    child: Option<Child>,
    /// The node name it was given.
    pub(crate) node: String,
}

impl AgentProcess {
    /// Starts an agent on `url` named `node` with `workers` workers and a lease of
    /// `lease`.
    pub(crate) fn start(url: &str, node: &str, workers: usize, lease: Duration) -> AgentProcess {
        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                "agent_entry",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(URL, url)
            .env(NODE, node)
            .env(WORKERS, workers.to_string())
            .env(LEASE_MS, lease.as_millis().to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("the agent starts");
        AgentProcess {
            child: Some(child),
            node: node.to_owned(),
        }
    }

    /// The agent's pid.
    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Sends `signal` to the agent.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("the agent is there");
    }

    /// Whether the agent is still running (it has not exited by itself).
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILLs the agent and reaps it: a lost machine.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The body of each test file's `agent_entry` test: serves as an agent when the
/// environment says so, does nothing otherwise.
pub(crate) fn agent_entry() {
    let Ok(url) = std::env::var(URL) else {
        return;
    };
    procpool_worker::link();
    let node = std::env::var(NODE).unwrap_or_else(|_| "node".into());
    let workers = std::env::var(WORKERS)
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let lease = std::env::var(LEASE_MS)
        .ok()
        .and_then(|l| l.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(procpool_cluster::DEFAULT_LEASE);
    let agent = procpool_cluster::Agent::builder(url)
        .node(node)
        .lease(lease)
        .patience(Duration::from_secs(30))
        .pool(procpool::Pool::builder().workers(workers))
        .build()
        .expect("the agent connects");
    if let Err(error) = agent.serve() {
        eprintln!("agent stopped: {error}");
        std::process::exit(3);
    }
}
