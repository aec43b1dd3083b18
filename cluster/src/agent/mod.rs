//! The node agent, in the process that runs tasks: the fetching loop (`serve`), the
//! pure decisions on how much to fetch (`budget`) and what a delivery's outcome becomes
//! (`verdict`), the deliveries held (`held`), their leases kept only while still the
//! agent's (`lease`), the thread that writes them back (`writer`), and the consumers of
//! agents gone for good, forgotten (`forget`).

pub(crate) mod budget;
pub(crate) mod forget;
pub(crate) mod held;
pub(crate) mod lease;
pub(crate) mod serve;
pub(crate) mod verdict;
pub(crate) mod writer;
