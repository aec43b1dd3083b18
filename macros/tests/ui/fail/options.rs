// Each option is checked at compile time, at its own span.

#[procpool::task(timeout = "5")]
fn no_unit() {}

#[procpool::task(timeout = "1.5s")]
fn fraction() {}

#[procpool::task(timeout = "0s")]
fn zero() {}

#[procpool::task(timeout = "5s", no_timeout)]
fn both() {}

#[procpool::task(retries = -1)]
fn negative() {}

#[procpool::task(name = "")]
fn nameless() {}

#[procpool::task(name = "a", name = "b")]
fn twice() {}

#[procpool::task(timout = "5s")]
fn misspelt() {}

fn main() {}
