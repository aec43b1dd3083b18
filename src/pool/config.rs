//! [`Config`]: the settings a running pool and its slots read.

use std::time::Duration;

use super::job::JobOptions;
use crate::launch::Launch;
use crate::slot::event::Events;
use crate::wire::frame::{self, Request};

/// The settings a running pool reads.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_tasks_per_worker: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) retries: u32,
    pub(crate) max_in_flight: usize,
    pub(crate) context: Option<Vec<u8>>,
    pub(crate) start_timeout: Duration,
    pub(crate) kill_grace: Duration,
    pub(crate) core_dumps: bool,
    pub(crate) max_start_failures: u32,
    /// Workers run this program, so its task registry is theirs: a task it has
    /// registered for other types only is refused before it is sent.
    pub(crate) registry_here: bool,
    /// Where the slots tell what happens in them.
    pub(crate) events: Events,
    /// How workers start, for the pool's `Debug`.
    pub(crate) launch: Launch,
}

impl Config {
    /// The options a job gets by default: the pool's timeout and retries.
    pub(crate) fn job_options(&self) -> JobOptions {
        JobOptions {
            timeout: self.timeout,
            retries: self.retries,
        }
    }

    /// The `Setup` frame every worker gets first: the pool's limits and its context.
    pub(crate) fn setup_frame(&self) -> Vec<u8> {
        let setup = Request::Setup {
            protocol: frame::PROTOCOL,
            memory_limit: self.max_memory,
            core_dumps: self.core_dumps,
            has_context: self.context.is_some(),
        };
        frame::encode(&setup, |buf| {
            if let Some(context) = &self.context {
                buf.extend_from_slice(context);
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {})
    }
}
