//! `unlinker`: see the library crate for everything; this only exits with the command's code.

fn main() {
    std::process::exit(unlinker::cli::main());
}
