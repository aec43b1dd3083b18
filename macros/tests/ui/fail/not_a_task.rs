// A closure, a function without the attribute, or a plain value is not a task: the
// error says what to do instead.

fn unmarked(n: u64) -> u64 {
    n
}

fn main() {
    let pool = procpool::Pool::new().unwrap();
    let _ = pool.call(|n: u64| n * 2, 4);
    let _ = pool.call(unmarked, 4);
    let _ = pool.submit(4u64);
}
