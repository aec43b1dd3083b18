// What a task function cannot be: each part is an error where it is written.

#[procpool::task]
fn generic<T: Clone>(value: T) -> T {
    value
}

#[procpool::task]
async fn later(n: u64) -> u64 {
    n
}

struct Parser;

impl Parser {
    #[procpool::task]
    fn method(&self, n: u64) -> u64 {
        n
    }
}

#[procpool::task]
fn borrowed(text: &str) -> usize {
    text.len()
}

#[procpool::task]
fn opaque(items: Vec<impl Clone>) -> impl Clone {
    items.len()
}

#[procpool::task]
unsafe fn raw(n: u64) -> u64 {
    n
}

fn main() {}
