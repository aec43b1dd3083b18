// An argument or a result that cannot cross to a worker is reported where it is written:
// the argument list of a function of several arguments, or the result type.

struct Handle;

#[procpool::task]
fn several(n: u64, handle: Handle) -> u64 {
    let _ = handle;
    n
}

#[procpool::task]
fn returns(n: u64) -> Handle {
    let _ = n;
    Handle
}

fn main() {}
