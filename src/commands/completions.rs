//! `unlinker completions SHELL`: the shell completion script, generated from the clap types, on
//! stdout.

use clap::CommandFactory;

use super::write_stdout;
use crate::cli::Cli;
use crate::summary::exit;

pub(super) fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "unlinker", &mut out);
    write_stdout(&out);
    exit::OK
}
