#!/usr/bin/env bash
# The unlinker benchmark suite, in one command:
#
#   bash bench/run.sh            # full: 3 runs per figure (about 14 min on 2 cores)
#   bash bench/run.sh --quick    # smoke test: 1 run per figure, shorter scenarios (about 4 min)
#   bash bench/run.sh --runs 5 --only rate,overhead   # any of: rate recovery latency overhead
#                                                     # versus memory resume validate shared
#                                                     # reserve twojobs independence fair xargs
#
# Builds the release binaries and examples/bare_loop.rs, installs what it needs when missing
# (GNU time from apt, aiohttp from PyPI; `fair` needs taskset and `xargs` curl, each skipped
# when absent), then runs bench/bench.py, which starts a fresh
# `unlinker-sim` on a free port of 127.0.0.1 for every run, drives `target/release/unlinker` (and
# the baselines) against it, prints a Markdown table and writes it with every run's figures to
# bench/results.md (or --out FILE). Nothing is sent anywhere but 127.0.0.1. Inputs (up to 1M rows,
# ~70 MB) and state (~800 MB at the resume scenario's peak) go to a temporary folder under
# $BENCH_TMPDIR (default: the system's temp dir), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[bench] $*" >&2; }

command -v python3 >/dev/null || { say "python3 is required"; exit 1; }
command -v cargo >/dev/null || { say "cargo is required"; exit 1; }

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! /usr/bin/time -f %M true >/dev/null 2>&1; then
    say "installing GNU time (peak RSS and CPU time of each run)"
    sudo_if_needed apt-get update -qq
    sudo_if_needed apt-get install -y -qq time >/dev/null
fi

if ! python3 -c 'import aiohttp' 2>/dev/null; then
    say "installing aiohttp for the Python baseline"
    python3 -m pip install --quiet aiohttp || python3 -m pip install --quiet --user aiohttp
fi

say "building release binaries"
cargo build --release --quiet --bin unlinker --bin unlinker-sim --example bare_loop

exec python3 bench/bench.py --cmdline "bash bench/run.sh${*:+ $*}" "$@"
