//! Load generator placeholder.
fn main() {}
