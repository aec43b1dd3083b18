//! The `progress` feature: a map drawn as a terminal progress bar (indicatif) with its
//! outcomes counted by kind as they come. `bar.rs` holds the adapter ([`Progress`]),
//! `counts.rs` the line of counts it shows, `pacer.rs` when it brings the bar up to
//! date: rarely enough that a map of tiny tasks does not feel it.

pub(crate) mod bar;
pub(crate) mod counts;
pub(crate) mod pacer;

pub use bar::Progress;
