//! `unlinker`: see the library crate for everything; this only exits with the command's code.

/// Rows are allocated on the reader thread and freed on the runtime's workers; glibc's allocator
/// serialises that on its arena locks (measured: a sixth of the client's CPU at 30k rows/s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(unlinker::cli::main());
}
