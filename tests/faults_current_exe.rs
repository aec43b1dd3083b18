//! The fault matrix with the default launch: the test binary re-executes itself.

mod common;

procpool::test_support!();

fn builder() -> procpool::PoolBuilder {
    procpool_worker::link();
    procpool::Pool::builder().workers(2)
}

fault_matrix!(builder());
