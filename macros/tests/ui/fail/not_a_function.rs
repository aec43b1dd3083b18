// The attribute goes on functions only.

#[procpool::task]
struct Square(u64);

fn main() {}
