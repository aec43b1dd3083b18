//! The standalone procpool worker, started by `Launch::Binary`; and, with the argument
//! `agent`, a cluster node agent that runs the tasks this binary carries.
//!
//! To build your own worker binary, copy this file: link the crate that registers your
//! tasks (here `procpool_worker`, which carries the demo tasks) and call
//! `procpool::init()` first thing. The same binary serves as your node agent:
//!
//! ```text
//! procpool-worker agent redis://127.0.0.1/ [--node NAME] [--workers N] [--lease-ms MS]
//! ```

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    procpool_worker::link();
    // In a worker process this serves the pool and never returns.
    procpool::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("agent") => match agent(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("procpool-worker agent: {error:#}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "procpool-worker: this program is started by a procpool Pool \
                 (Launch::Binary), or as a cluster node agent:\n  \
                 procpool-worker agent <redis-url> [--node NAME] [--workers N] [--lease-ms MS]"
            );
            ExitCode::from(2)
        }
    }
}

/// Serves as a node agent until the server stays out of reach past the patience.
fn agent(args: &[String]) -> anyhow::Result<()> {
    let settings = AgentArgs::parse(args)?;
    let mut agent = procpool_cluster::Agent::builder(settings.url);
    if let Some(node) = settings.node {
        agent = agent.node(node);
    }
    if let Some(lease) = settings.lease {
        agent = agent.lease(lease);
    }
    let mut pool = procpool::Pool::builder();
    if let Some(workers) = settings.workers {
        pool = pool.workers(workers);
    }
    let agent = agent.pool(pool).build()?;
    eprintln!("procpool-worker agent {} serving", agent.name());
    agent.serve()?;
    Ok(())
}

/// The agent's command line.
#[derive(Debug, PartialEq)]
struct AgentArgs {
    url: String,
    node: Option<String>,
    workers: Option<usize>,
    lease: Option<Duration>,
}

impl AgentArgs {
    fn parse(args: &[String]) -> anyhow::Result<AgentArgs> {
        let mut args = args.iter();
        let url = args
            .next()
            .filter(|url| !url.starts_with("--"))
            .ok_or_else(|| anyhow::anyhow!("the server's URL comes first"))?
            .clone();
        let mut parsed = AgentArgs {
            url,
            node: None,
            workers: None,
            lease: None,
        };
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
            match flag.as_str() {
                "--node" => parsed.node = Some(value.clone()),
                "--workers" => parsed.workers = Some(value.parse()?),
                "--lease-ms" => parsed.lease = Some(Duration::from_millis(value.parse()?)),
                other => anyhow::bail!("unknown option {other}"),
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn an_agent_command_line_reads_back() {
        let parsed = AgentArgs::parse(&args("redis://h/ --node n1 --workers 3 --lease-ms 900"));
        assert_eq!(
            parsed.unwrap(),
            AgentArgs {
                url: "redis://h/".into(),
                node: Some("n1".into()),
                workers: Some(3),
                lease: Some(Duration::from_millis(900)),
            }
        );
        assert!(AgentArgs::parse(&args("--node n1")).is_err());
        assert!(AgentArgs::parse(&args("redis://h/ --workers")).is_err());
        assert!(AgentArgs::parse(&args("redis://h/ --workers many")).is_err());
        assert!(AgentArgs::parse(&args("redis://h/ --colour red")).is_err());
    }
}
