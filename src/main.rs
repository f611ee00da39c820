//! The `hometun` command: clap wiring only; the work happens in the crates.

fn main() {
    println!("hometun");
}
