// A `Result`'s error must convert into `procpool::BoxError`.

#[derive(Debug)]
struct NotAnError;

#[procpool::task]
fn fails(n: u64) -> Result<u64, NotAnError> {
    Err(NotAnError).or(Ok(n))
}

fn main() {}
