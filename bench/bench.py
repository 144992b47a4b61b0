#!/usr/bin/env python3
"""The unlinker benchmark suite: drives the release binaries against `unlinker-sim` on loopback.

Run it through `bash bench/run.sh [--quick] [--runs N] [--only a,b]`, which builds what it needs
first. See bench/README.md for what each scenario measures and how.

Every figure is the median of N runs; every comparison is a ratio of medians measured in the same
invocation. Each run gets a fresh simulator on a free port of 127.0.0.1 (nothing here ever sends
traffic anywhere else). Inputs and state live in a temporary folder that is removed at the end.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
UNLINKER = os.path.join(REL, "unlinker")
SIM = os.path.join(REL, "unlinker-sim")
BARE = os.path.join(REL, "examples", "bare_loop")
BASELINE = os.path.join(ROOT, "bench", "baseline_aiohttp.py")
TOKEN = "sim-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TIME = "/usr/bin/time"  # GNU time (Debian package `time`)

ALL_SCENARIOS = ["rate", "recovery", "latency", "overhead", "versus", "memory", "resume", "validate",
                 "shared", "reserve", "twojobs", "independence", "fair", "xargs"]
FA_KEY = "sim-fusionauth-key"
FA_IDP = "82339786-3dff-42a6-aac6-1f1ceecb6c46"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------------------------
# Processes


def proc_cpu_s(pid):
    """utime + stime of a live process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


QUIET = {"max_wait": 30.0, "threshold": 0.15}


def cpu_busy(interval=0.5):
    """Share of all CPUs busy (anyone's) over `interval` seconds, from /proc/stat."""

    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total

    i0, t0 = snap()
    time.sleep(interval)
    i1, t1 = snap()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet():
    """This machine is shared: before a measured run, wait (up to QUIET["max_wait"] s) until the
    other processes leave the CPUs mostly idle. Returns the busy share seen last."""
    deadline = time.monotonic() + QUIET["max_wait"]
    while True:
        busy = cpu_busy()
        if busy <= QUIET["threshold"] or time.monotonic() >= deadline:
            return busy
        time.sleep(1.0)


def run_measured(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=None):
    """Run `cmd` to its end under GNU time. Returns its exit code, wall seconds from just before
    the fork to its reaping, the wall-clock time it was started at, and its own peak RSS (MB) and
    CPU seconds as GNU time reads them from wait4.

    Why GNU time and not os.wait4 here: Python starts children with vfork, and Linux carries the
    peak RSS of the address space a process had before exec into ru_maxrss, so every child would
    report at least this harness's own RSS. GNU time is a small C program: its floor is ~2 MB."""
    fd, tfile = tempfile.mkstemp(prefix="time-", suffix=".txt")
    os.close(fd)
    busy = wait_quiet()
    start_wall = time.time()
    t0 = time.monotonic()
    p = subprocess.Popen([TIME, "-q", "-o", tfile, "-f", "%M %U %S", *cmd], stdout=stdout, stderr=stderr, cwd=cwd)
    p.wait()
    wall = time.monotonic() - t0
    with open(tfile) as f:
        last = f.read().strip().splitlines()[-1].split()
    os.unlink(tfile)
    return {
        "rc": p.returncode,
        "wall_s": wall,
        "start_wall": start_wall,
        "maxrss_mb": int(last[0]) / 1024.0,
        "cpu_s": float(last[1]) + float(last[2]),
        "cpu_busy_before": round(busy, 3),
    }


def http_get(url, timeout=30):
    assert url.startswith("http://127.0.0.1:"), url
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Sim:
    """A fresh `unlinker-sim --all-linked` on a free loopback port."""

    def __init__(self, *flags, prefix=()):
        self.p = subprocess.Popen(
            [*prefix, SIM, "--port", "0", "--all-linked", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.p.stdout.readline().strip()
        if not line.startswith("listening on http://127.0.0.1:"):
            self.p.kill()
            raise RuntimeError(f"unlinker-sim did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1]

    def cpu_s(self):
        return proc_cpu_s(self.p.pid)

    def counters(self, vendor="auth0"):
        return json.loads(http_get(self.url + "/_sim/counters?keys=false"))["vendors"][vendor]

    def bucket(self, vendor="auth0"):
        """The server-side bucket: limit, rate, background counts, `samples` [[at_ms, tokens]]."""
        return json.loads(http_get(self.url + "/_sim/counters?keys=false"))["buckets"][vendor]

    def log_entries(self, vendor="auth0"):
        return [e for e in json.loads(http_get(self.url + "/_sim/log")) if e["vendor"] == vendor]

    def clock_offset(self):
        """Wall-clock time of the simulator's `at_ms` zero: send one request it logs (to a
        FusionAuth path, so Auth0's entries stay clean) and take the midpoint of the round trip.
        Error: half a loopback round trip (well under 1 ms)."""
        t0 = time.time()
        try:
            http_get(self.url + "/api/identity-provider/link?probe=1")
        except urllib.error.HTTPError:
            pass  # 401 without credentials: it is logged all the same
        t1 = time.time()
        entries = [e for e in json.loads(http_get(self.url + "/_sim/log")) if e["vendor"] == "fusionauth"]
        at = entries[-1]["at_ms"] / 1000.0
        return (t0 + t1) / 2 - at

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# Inputs and jobs


class Workdir:
    def __init__(self, base):
        self.base = base
        self.inputs = {}
        self.n = 0

    def input(self, rows):
        """An Auth0 CSV of `rows` rows, every key unique (each row its own user)."""
        if rows not in self.inputs:
            path = os.path.join(self.base, f"input-{rows}.csv")
            t0 = time.monotonic()
            with open(path, "w") as f:
                f.write("user_id,provider,identity_user_id\n")
                chunk = []
                for i in range(rows):
                    chunk.append(f"auth0|{i:024x},google-oauth2,{100000000000000000000 + i}\n")
                    if len(chunk) == 100_000:
                        f.write("".join(chunk))
                        chunk = []
                f.write("".join(chunk))
            log(f"generated {rows} rows ({os.path.getsize(path) / 1e6:.1f} MB) in {time.monotonic() - t0:.1f} s")
            self.inputs[rows] = path
        return self.inputs[rows]

    def job(self, name, url, input_path, rate, burst=None, concurrency=None, state=None, extra=()):
        """A job file in a new folder; the report and checkpoint go beside it."""
        self.n += 1
        folder = state or os.path.join(self.base, f"{self.n:03d}-{name}")
        os.makedirs(folder, exist_ok=True)
        lines = [
            f'name = "bench-{name}"',
            "[input]",
            f'path = "{input_path}"',
            "[output]",
            'report = "report.csv"',
            "[vendors.auth0]",
            'type = "auth0"',
            f'base_url = "{url}"',
            f'token = "{TOKEN}"',
            f"rate = {rate}",
        ]
        if burst is not None:
            lines.append(f"burst = {burst}")
        if concurrency is not None:
            lines.append(f"concurrency = {concurrency}")
        lines.extend(extra)
        path = os.path.join(folder, "job.toml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def run_unlinker(self, job, *extra, prefix=()):
        folder = os.path.dirname(job)
        summary = os.path.join(folder, "summary.json")
        with open(os.path.join(folder, "stderr.log"), "w") as err:
            r = run_measured([*prefix, UNLINKER, "run", job, "--no-progress", "--summary", summary, *extra], stderr=err)
        if r["rc"] not in (0, 4):
            raise RuntimeError(f"unlinker exited {r['rc']}; see {folder}/stderr.log")
        with open(summary) as f:
            r["summary"] = json.load(f)
        return r


UNLIMITED = 1_000_000  # requests/s: "no rate limit" for the client


def rows_done(summary):
    c = summary["this_run"]
    return c["unlinked"] + c["absent"]


# ---------------------------------------------------------------------------------------------
# Scenarios. Each returns a list of result rows for the table plus a details dict.


class Bench:
    def __init__(self, args, wd):
        self.args = args
        self.wd = wd
        self.quick = args.quick
        self.runs = args.runs
        self.table = []
        self.details = {}
        self.conc = args.concurrency

    def row(self, scenario, target, measured, runs, met, note=""):
        self.table.append(
            {"scenario": scenario, "target": target, "measured": measured, "runs": runs, "met": met, "note": note}
        )

    # -- rate precision ------------------------------------------------------------------------
    def rate(self):
        secs = 10 if self.quick else 30
        rate = 100
        rows = rate * secs
        inp = self.wd.input(rows)
        runs = []
        for i in range(self.runs):
            with Sim("--rate-limit", f"auth0={rate}") as sim:
                # What a user writes: `rate = 100`, the vendor's default burst and concurrency.
                job = self.wd.job("rate", sim.url, inp, rate)
                r = self.wd.run_unlinker(job)
                entries = sim.log_entries()
                counters = sim.counters()
            v = r["summary"]["vendors"]["auth0"]
            ats = sorted(e["at_ms"] for e in entries)
            server_rate = (len(ats) - 1) / ((ats[-1] - ats[0]) / 1000.0) if len(ats) > 1 else float("nan")
            runs.append(
                {
                    "requests_per_s": v["requests_per_s"],
                    "client_rate_limited": v["rate_limited"],
                    "server_rate_limited": counters["rate_limited"],
                    "server_side_rate": server_rate,
                    "rows": rows_done(r["summary"]),
                    "elapsed_s": r["summary"]["elapsed"],
                    "cpu_busy_before": r["cpu_busy_before"],
                }
            )
            log(f"rate run {i + 1}: {v['requests_per_s']:.2f}/s (server-side {server_rate:.2f}/s), 429s: {counters['rate_limited']}")
        achieved = median([x["requests_per_s"] for x in runs])
        limited = max(x["server_rate_limited"] + x["client_rate_limited"] for x in runs)
        met = abs(achieved - rate) / rate <= 0.02 and limited == 0
        self.row(
            f"rate precision: `rate = {rate}`, {secs} s ({rows} rows), server bucket {rate}/s",
            "within 2% of 100/s; 0 rate-limit answers",
            f"{achieved:.2f}/s ({(achieved - rate) / rate * 100:+.2f}%); {limited} rate-limit answers (max over runs); "
            f"server-side steady rate {median([x['server_side_rate'] for x in runs]):.2f}/s",
            len(runs),
            met,
        )
        self.details["rate"] = runs

    # -- 429 recovery --------------------------------------------------------------------------
    def recovery(self):
        secs = 10 if self.quick else 30
        server = 50
        rows = server * secs
        inp = self.wd.input(rows)
        runs = []
        for i in range(self.runs):
            # Without budget headers: this scenario measures recovery from 429s, which
            # header-synced pacing would otherwise avoid altogether (see `shared`).
            with Sim("--rate-limit", f"auth0={server}", "--no-budget-headers") as sim:
                job = self.wd.job("recovery", sim.url, inp, 2 * server)
                r = self.wd.run_unlinker(job)
                counters = sim.counters()
                entries = sim.log_entries()
            # The server's own view after its initial burst: accepted calls per second from 1 s
            # after the first call to the last one.
            ok = sorted(e["at_ms"] for e in entries if e["status"] == 200)
            after = [t for t in ok if t >= ok[0] + 1000]
            steady = (len(after) - 1) / ((after[-1] - after[0]) / 1000.0) if len(after) > 1 else float("nan")
            s = r["summary"]
            v = s["vendors"]["auth0"]
            rps = rows_done(s) / s["elapsed"]
            runs.append(
                {
                    "rows_per_s": rps,
                    "share_of_limit": rps / server,
                    "failed": s["counts"]["failed"],
                    "requests": v["requests"],
                    "rate_limited": v["rate_limited"],
                    "server_rate_limited": counters["rate_limited"],
                    "server_steady_accepted_per_s": steady,
                    "elapsed_s": s["elapsed"],
                    "cpu_busy_before": r["cpu_busy_before"],
                }
            )
            log(f"recovery run {i + 1}: {rps:.2f} rows/s = {rps / server:.1%} of {server}/s; 429s {v['rate_limited']}; failed {s['counts']['failed']}")
        share = median([x["share_of_limit"] for x in runs])
        failed = max(x["failed"] for x in runs)
        self.row(
            f"429 recovery: `rate = {2 * server}` against a {server}/s server bucket (Auth0 `x-ratelimit-reset` on its 429s, no budget headers), {rows} rows",
            "≥ 90% of the server's limit; 0 rows failed",
            f"{share * server:.2f} rows/s = {share:.1%} of {server}/s; {failed} failed; "
            f"{median([x['rate_limited'] for x in runs]):.0f} rate-limit answers; server-side steady accepted rate "
            f"{median([x['server_steady_accepted_per_s'] for x in runs]):.2f}/s",
            len(runs),
            share >= 0.9 and failed == 0,
        )
        self.details["recovery"] = runs

    # -- latency-bound -------------------------------------------------------------------------
    def latency(self):
        conc, lat = 64, 0.05
        ideal = conc / lat
        secs = 5 if self.quick else 20
        rows = int(ideal * secs)
        inp = self.wd.input(rows)
        runs = []
        for i in range(self.runs):
            with Sim("--latency", "50ms") as sim:
                job = self.wd.job("latency", sim.url, inp, UNLIMITED, burst=UNLIMITED, concurrency=conc)
                r = self.wd.run_unlinker(job)
            s = r["summary"]
            rps = rows_done(s) / s["elapsed"]
            runs.append({"rows_per_s": rps, "elapsed_s": s["elapsed"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
                         "cpu_busy_before": r["cpu_busy_before"]})
            log(f"latency run {i + 1}: {rps:.0f} rows/s = {rps / ideal:.1%} of {ideal:.0f}")
        m = median([x["rows_per_s"] for x in runs])
        self.row(
            f"latency-bound: 50 ms server latency, concurrency {conc}, no rate limit, {rows} rows",
            f"≥ 90% of {ideal:,.0f} rows/s",
            f"{m:,.0f} rows/s = {m / ideal:.1%}",
            len(runs),
            m >= 0.9 * ideal,
        )
        self.details["latency"] = runs

    # -- overhead vs the bare loop -------------------------------------------------------------
    def throughput_pair(self, name, rows, others, sim_cpu=(), client_cpu=()):
        """Alternate unlinker and each of `others` (name -> command builder) on the same input,
        each against a fresh simulator; rows/s from process wall time for every contender.
        `sim_cpu` / `client_cpu`: command prefixes (`taskset -c N`) pinning either side."""
        inp = self.wd.input(rows)
        res = {"unlinker": []}
        for k in others:
            res[k] = []
        for i in range(self.runs):
            with Sim(prefix=sim_cpu) as sim:
                job = self.wd.job(name, sim.url, inp, UNLIMITED, burst=UNLIMITED, concurrency=self.conc)
                c0 = sim.cpu_s()
                r = self.wd.run_unlinker(job, prefix=client_cpu)
                sim_used = sim.cpu_s() - c0
            s = r["summary"]
            assert rows_done(s) == rows, s
            res["unlinker"].append(
                {
                    "rows_per_s": rows / r["wall_s"],
                    "summary_requests_per_s": s["vendors"]["auth0"]["requests_per_s"],
                    "wall_s": r["wall_s"],
                    "cpu_s": r["cpu_s"],
                    "cpu_us_per_row": r["cpu_s"] / rows * 1e6,
                    "sim_cpu_s": sim_used,
                    "maxrss_mb": r["maxrss_mb"],
                    "cpu_busy_before": r["cpu_busy_before"],
                }
            )
            log(f"{name} run {i + 1}: unlinker {rows / r['wall_s']:,.0f} rows/s (cpu {r['cpu_s']:.1f} s, sim cpu {sim_used:.1f} s)")
            for k, build in others.items():
                with Sim(prefix=sim_cpu) as sim:
                    out = os.path.join(self.wd.base, f"{k}-out.csv")
                    c0 = sim.cpu_s()
                    with open(out + ".stdout", "w") as so:
                        o = run_measured([*client_cpu, *build(sim.url, inp, out)], stdout=so)
                    sim_used = sim.cpu_s() - c0
                    got = sim.counters()
                with open(out + ".stdout") as so:
                    lines = so.read().strip().splitlines()
                own = json.loads(lines[-1]) if lines else {"rows_per_s": float("nan")}
                if o["rc"] != 0 or got["removed"] != rows:
                    raise RuntimeError(f"{k} failed: rc {o['rc']}, removed {got['removed']} of {rows}")
                res[k].append(
                    {
                        "rows_per_s": rows / o["wall_s"],
                        "self_reported_rows_per_s": own.get("rows_per_s", float("nan")),
                        "wall_s": o["wall_s"],
                        "cpu_s": o["cpu_s"],
                        "cpu_us_per_row": o["cpu_s"] / rows * 1e6,
                        "sim_cpu_s": sim_used,
                        "maxrss_mb": o["maxrss_mb"],
                        "cpu_busy_before": o["cpu_busy_before"],
                    }
                )
                log(f"{name} run {i + 1}: {k} {rows / o['wall_s']:,.0f} rows/s (cpu {o['cpu_s']:.1f} s, sim cpu {sim_used:.1f} s)")
        return res

    def overhead(self):
        rows = 50_000 if self.quick else 200_000
        conc = self.conc
        res = self.throughput_pair(
            "overhead", rows, {"bare_loop": lambda url, inp, out: [BARE, url, inp, str(conc)]}
        )
        u = median([x["rows_per_s"] for x in res["unlinker"]])
        b = median([x["rows_per_s"] for x in res["bare_loop"]])
        uc = median([x["cpu_us_per_row"] for x in res["unlinker"]])
        bc = median([x["cpu_us_per_row"] for x in res["bare_loop"]])
        self.row(
            f"overhead: 0 latency, no rate limit, {rows:,} rows, concurrency {conc}, checkpoint + report on",
            "≥ 10,000 rows/s",
            f"{u:,.0f} rows/s",
            len(res["unlinker"]),
            u >= 10_000,
        )
        self.row(
            "overhead vs a bare reqwest loop (`examples/bare_loop.rs`), same simulator endpoint, same run",
            "≥ 0.5×",
            f"{u / b:.2f}× (bare loop {b:,.0f} rows/s; client CPU {uc:.1f} vs {bc:.1f} µs/row)",
            len(res["bare_loop"]),
            u / b >= 0.5,
        )
        self.details["overhead"] = res

    def versus(self):
        rows = 20_000 if self.quick else 50_000
        conc = self.conc
        res = self.throughput_pair(
            "versus",
            rows,
            {
                "python_aiohttp": lambda url, inp, out: [
                    sys.executable, BASELINE, url, inp, out, "--concurrency", str(conc)
                ],
                "bare_loop": lambda url, inp, out: [BARE, url, inp, str(conc)],
            },
        )
        u = median([x["rows_per_s"] for x in res["unlinker"]])
        p = median([x["rows_per_s"] for x in res["python_aiohttp"]])
        b = median([x["rows_per_s"] for x in res["bare_loop"]])
        uc = median([x["cpu_us_per_row"] for x in res["unlinker"]])
        pc = median([x["cpu_us_per_row"] for x in res["python_aiohttp"]])
        self.row(
            f"versus Python asyncio + aiohttp (`bench/baseline_aiohttp.py`), {rows:,} rows, concurrency {conc}",
            "≥ 5× its rows/s",
            f"{u / p:.2f}× ({u:,.0f} vs {p:,.0f} rows/s; the bare loop, this machine's ceiling with the simulator, is {b / p:.2f}×; "
            f"client CPU per row {pc / uc:.2f}× lower: {uc:.1f} vs {pc:.1f} µs)",
            len(res["python_aiohttp"]),
            u / p >= 5,
        )
        self.details["versus"] = res

    # -- memory --------------------------------------------------------------------------------
    def memory(self):
        sizes = [100_000, 1_000_000]
        res = {}
        for n in sizes:
            inp = self.wd.input(n)
            res[n] = []
            for i in range(self.runs):
                with Sim() as sim:
                    job = self.wd.job(f"memory-{n}", sim.url, inp, UNLIMITED, burst=UNLIMITED, concurrency=self.conc)
                    r = self.wd.run_unlinker(job)
                assert rows_done(r["summary"]) == n
                res[n].append({"maxrss_mb": r["maxrss_mb"], "wall_s": r["wall_s"], "rows_per_s": n / r["wall_s"],
                               "cpu_busy_before": r["cpu_busy_before"]})
                log(f"memory {n} run {i + 1}: peak RSS {r['maxrss_mb']:.1f} MB, {n / r['wall_s']:,.0f} rows/s")
                shutil.rmtree(os.path.dirname(job))
        small = median([x["maxrss_mb"] for x in res[sizes[0]]])
        big = median([x["maxrss_mb"] for x in res[sizes[1]]])
        self.row(
            "memory: peak RSS at 1M rows",
            "≤ 100 MB",
            f"{big:.1f} MB",
            len(res[sizes[1]]),
            big <= 100,
        )
        self.row(
            "memory: 1M rows vs 100k rows",
            "≤ 1.5×",
            f"{big / small:.2f}× ({big:.1f} MB vs {small:.1f} MB)",
            len(res[sizes[0]]),
            big / small <= 1.5,
        )
        self.details["memory"] = {str(k): v for k, v in res.items()}

    # -- resume --------------------------------------------------------------------------------
    def resume(self):
        n, left = 1_000_000, 10
        inp = self.wd.input(n)
        prep = os.path.join(self.wd.base, "resume-prepared")
        # The checkpoint is made honestly: a real run of the job with --limit, stopped cleanly.
        with Sim() as sim:
            job = self.wd.job("resume", sim.url, inp, UNLIMITED, burst=UNLIMITED, concurrency=self.conc, state=prep)
            r = self.wd.run_unlinker(job, "--limit", str(n - left))
        s = r["summary"]
        assert s["pending"] == left, s
        ck = os.path.getsize(os.path.join(prep, "report.csv.ckpt"))
        log(f"resume: prepared {n - left} rows in {r['wall_s']:.1f} s; checkpoint {ck / 1e6:.0f} MB")
        runs = []
        for i in range(self.runs):
            state = os.path.join(self.wd.base, f"resume-run-{i}")
            shutil.copytree(prep, state)
            # The copy leaves hundreds of MB of dirty pages: write them out now, or the run's
            # first fdatasync (before its first intents are acknowledged) would pay for the copy.
            for name in os.listdir(state):
                fd = os.open(os.path.join(state, name), os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
            with Sim() as sim:
                job = self.wd.job("resume", sim.url, inp, UNLIMITED, burst=UNLIMITED, concurrency=self.conc, state=state)
                offset = sim.clock_offset()
                rr = self.wd.run_unlinker(job)
                entries = sim.log_entries()
            assert rows_done(rr["summary"]) == left and rr["summary"]["complete"], rr["summary"]
            first = min(e["at_ms"] for e in entries) / 1000.0 + offset
            ttfr = first - rr["start_wall"]
            runs.append({"first_request_s": ttfr, "wall_s": rr["wall_s"], "cpu_s": rr["cpu_s"], "maxrss_mb": rr["maxrss_mb"],
                         "requests": len(entries), "cpu_busy_before": rr["cpu_busy_before"]})
            log(f"resume run {i + 1}: first request {ttfr:.3f} s after start; whole run {rr['wall_s']:.2f} s")
            shutil.rmtree(state)
        m = median([x["first_request_s"] for x in runs])
        self.row(
            f"resume: 1M-row job, all but {left} rows done ({ck / 1e6:.0f} MB checkpoint, warm page cache)",
            "first new request ≤ 2 s after start",
            f"{m:.2f} s (whole run {median([x['wall_s'] for x in runs]):.2f} s)",
            len(runs),
            m <= 2.0,
        )
        self.details["resume"] = {"prepare_wall_s": r["wall_s"], "prepare_rows_per_s": (n - left) / r["wall_s"],
                                  "checkpoint_bytes": ck, "runs": runs}
        shutil.rmtree(prep)

    # -- validate ------------------------------------------------------------------------------
    def validate(self):
        n = 1_000_000
        inp = self.wd.input(n)
        job = self.wd.job("validate", "http://127.0.0.1:9", inp, 10)
        runs = []
        for i in range(self.runs):
            r = run_measured([UNLINKER, "validate", job])
            if r["rc"] != 0:
                raise RuntimeError(f"validate exited {r['rc']}")
            runs.append({"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "maxrss_mb": r["maxrss_mb"],
                         "cpu_busy_before": r["cpu_busy_before"]})
            log(f"validate run {i + 1}: {r['wall_s']:.2f} s, peak RSS {r['maxrss_mb']:.1f} MB")
        m = median([x["wall_s"] for x in runs])
        self.row("validate: 1M-row CSV", "≤ 3 s", f"{m:.2f} s", len(runs), m <= 3.0)
        self.details["validate"] = runs

    # -- header-synced pacing on a shared bucket -----------------------------------------------
    def shared_runs(self, name, reserve):
        """Server bucket 50/s burst 50 with 20/s of background traffic; the job asks `rate = 50`."""
        server, background = 50, 20
        secs = 10 if self.quick else 30
        rows = (server - background) * secs
        inp = self.wd.input(rows)
        extra = [f"reserve = {reserve}"] if reserve else []
        runs = []
        for i in range(self.runs):
            with Sim("--rate-limit", f"auth0={server}/{server}", "--background", f"auth0={background}") as sim:
                job = self.wd.job(name, sim.url, inp, server, extra=extra)
                offset = sim.clock_offset()
                r = self.wd.run_unlinker(job)
                bucket = sim.bucket()
            s = r["summary"]
            v = s["vendors"]["auth0"]
            # The bucket while the job ran, from 2 s after it started.
            t0 = (r["start_wall"] - offset) * 1000.0
            t1 = t0 + r["wall_s"] * 1000.0
            during = [tok for at, tok in bucket["samples"] if t0 + 2000 <= at <= t1]
            runs.append(
                {
                    "rows_per_s": rows_done(s) / s["elapsed"],
                    "requests": v["requests"],
                    "rate_limited": v["rate_limited"],
                    "rate_limited_share": v["rate_limited"] / max(1, v["requests"]),
                    "background_refused": bucket["background_refused"],
                    "background_taken": bucket["background_taken"],
                    "bucket_min_after_2s": min(during) if during else float("nan"),
                    "elapsed_s": s["elapsed"],
                    "cpu_busy_before": r["cpu_busy_before"],
                }
            )
            x = runs[-1]
            log(f"{name} run {i + 1}: {x['rows_per_s']:.2f} rows/s, 429s {x['rate_limited']}, background refused "
                f"{x['background_refused']}, bucket min after 2 s {x['bucket_min_after_2s']:.1f}")
        return runs, server - background, rows

    def shared(self):
        runs, left, rows = self.shared_runs("shared", 0)
        rps = median([x["rows_per_s"] for x in runs])
        share = median([x["rate_limited_share"] for x in runs])
        self.row(
            f"shared bucket: server 50/s burst 50 with 20/s background; job `rate = 50`, {rows} rows",
            f"rate-limit answers ≤ 1% of the job's requests; ≥ 90% of the {left}/s left",
            f"{rps:.2f} rows/s = {rps / left:.1%} of {left}/s; rate-limit answers {share:.2%} of requests; "
            f"background refused {median([x['background_refused'] for x in runs]):.0f}",
            len(runs),
            share <= 0.01 and rps >= 0.9 * left,
        )
        self.details["shared"] = runs

    def reserve(self):
        runs, left, rows = self.shared_runs("reserve", 0.3)
        low = min(x["bucket_min_after_2s"] for x in runs)
        rps = median([x["rows_per_s"] for x in runs])
        self.row(
            f"reserve: as above with `reserve = 0.3`, {rows} rows",
            "the bucket's remaining never below 0.25 × limit (12.5) after the first 2 s",
            f"lowest {low:.1f} of 50 (min over runs, 100 ms samples); job {rps:.2f} rows/s; "
            f"{median([x['rate_limited'] for x in runs]):.0f} rate-limit answers",
            len(runs),
            low >= 12.5,
        )
        self.details["reserve"] = runs

    def twojobs(self):
        """Two jobs at once, each `rate = 50`, on one 50/s bucket and no background."""
        server = 50
        secs = 10 if self.quick else 30
        rows = server * secs // 2
        inp = self.wd.input(rows)
        runs = []
        for i in range(self.runs):
            with Sim("--rate-limit", f"auth0={server}/{server}") as sim:
                jobs = [self.wd.job(f"twojobs-{k}", sim.url, inp, server) for k in "ab"]
                wait_quiet()
                t0 = time.monotonic()
                procs = []
                for job in jobs:
                    folder = os.path.dirname(job)
                    cmd = [UNLINKER, "run", job, "--no-progress", "--summary", os.path.join(folder, "summary.json")]
                    procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                for p in procs:
                    p.wait()
                wall = time.monotonic() - t0
            sums = []
            for job in jobs:
                with open(os.path.join(os.path.dirname(job), "summary.json")) as f:
                    sums.append(json.load(f))
            done = sum(rows_done(x) for x in sums)
            requests = sum(x["vendors"]["auth0"]["requests"] for x in sums)
            limited = sum(x["vendors"]["auth0"]["rate_limited"] for x in sums)
            runs.append({"rows_per_s": done / wall, "requests": requests, "rate_limited": limited,
                         "rate_limited_share": limited / max(1, requests), "wall_s": wall,
                         "per_job_rows_per_s": [rows_done(x) / x["elapsed"] for x in sums]})
            log(f"twojobs run {i + 1}: together {done / wall:.2f} rows/s, 429s {limited} of {requests}")
        rps = median([x["rows_per_s"] for x in runs])
        share = median([x["rate_limited_share"] for x in runs])
        self.row(
            f"two jobs on one bucket (50/s, no background), each `rate = 50`, {rows} rows each",
            "together ≥ 90% of 50/s; rate-limit answers ≤ 1%",
            f"together {rps:.2f} rows/s = {rps / server:.1%}; rate-limit answers {share:.2%} of requests",
            len(runs),
            rps >= 0.9 * server and share <= 0.01,
        )
        self.details["twojobs"] = runs

    # -- vendor independence -------------------------------------------------------------------
    def mixed_input(self, fa_rows, ns_rows):
        path = os.path.join(self.wd.base, f"mixed-{fa_rows}-{ns_rows}.jsonl")
        every = max(1, fa_rows // max(1, ns_rows)) if ns_rows else 0
        with open(path, "w") as f:
            n = 0
            for i in range(fa_rows):
                f.write(json.dumps({"vendor": "fusionauth", "user_id": f"6f0a9b4e-2c1d-4e8f-9a3b-{i:012x}",
                                    "identity_provider_id": FA_IDP, "identity_provider_user_id": f"p{i}"}) + "\n")
                if every and i % every == every - 1 and n < ns_rows:
                    f.write(json.dumps({"vendor": "newspark", "vhost": 12, "uid": 5_000_000 + n,
                                        "external_id_provider_name": "facebook"}) + "\n")
                    n += 1
        return path

    def mixed_job(self, name, url, inp):
        self.wd.n += 1
        folder = os.path.join(self.wd.base, f"{self.wd.n:03d}-{name}")
        os.makedirs(folder)
        path = os.path.join(folder, "job.toml")
        with open(path, "w") as f:
            f.write(f"""name = "bench-{name}"
[input]
path = "{inp}"
[output]
report = "report.csv"
[vendors.fusionauth]
type = "fusionauth"
base_url = "{url}"
api_key = "{FA_KEY}"
rate = {UNLIMITED}
burst = {UNLIMITED}
concurrency = {self.conc}
[vendors.newspark]
type = "newspark"
base_url = "{url}"
rate = 100
concurrency = 4
[vendors.newspark.headers]
Cookie = "session=sim-session"
""")
        return path

    def time_fa_rows(self, name, inp, fa_rows):
        """Seconds from the start of the run until the simulator has removed every FusionAuth
        link (polled every 20 ms); then the run is stopped (SIGINT) if it is still going."""
        with Sim("--rate-limit", "newspark=0.5/1", "--retry-after") as sim:
            job = self.mixed_job(name, sim.url, inp)
            wait_quiet()
            t0 = time.monotonic()
            p = subprocess.Popen([UNLINKER, "run", job, "--no-progress"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            took = float("nan")
            while time.monotonic() - t0 < 600:
                if sim.counters("fusionauth")["removed"] >= fa_rows:
                    took = time.monotonic() - t0
                    break
                if p.poll() is not None:
                    break
                time.sleep(0.02)
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            ns = sim.counters("newspark")
        return took, ns

    def independence(self):
        fa_rows, ns_rows = (10_000, 5_000) if self.quick else (20_000, 5_000)
        mixed = self.mixed_input(fa_rows, ns_rows)
        alone = self.mixed_input(fa_rows, 0)
        runs = []
        for i in range(self.runs):
            t_alone, _ = self.time_fa_rows("alone", alone, fa_rows)
            t_mixed, ns = self.time_fa_rows("mixed", mixed, fa_rows)
            runs.append({"fa_alone_s": t_alone, "fa_mixed_s": t_mixed, "ratio": t_mixed / t_alone,
                         "newspark_rate_limited": ns["rate_limited"], "newspark_calls": ns["unlink_calls"]})
            log(f"independence run {i + 1}: FusionAuth rows alone {t_alone:.2f} s, beside a paused Newspark "
                f"{t_mixed:.2f} s ({t_mixed / t_alone:.2f}×); Newspark 429s {ns['rate_limited']}")
        ratio = median([x["ratio"] for x in runs])
        self.row(
            f"vendor independence: {fa_rows:,} FusionAuth rows interleaved with {ns_rows:,} Newspark rows, "
            "Newspark paused by 429s (server 0.5/s, `Retry-After`)",
            "FusionAuth rows finish in ≤ 1.2× the time they take alone",
            f"{ratio:.2f}× ({median([x['fa_mixed_s'] for x in runs]):.2f} s vs "
            f"{median([x['fa_alone_s'] for x in runs]):.2f} s alone)",
            len(runs),
            ratio <= 1.2,
        )
        self.details["independence"] = runs

    # -- fair overhead: each side on its own core ----------------------------------------------
    def fair(self):
        if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
            log("fair: needs 2 cores and taskset; skipped")
            return
        rows = 20_000 if self.quick else 50_000
        conc = self.conc
        res = self.throughput_pair(
            "fair",
            rows,
            {
                "bare_loop": lambda url, inp, out: [BARE, url, inp, str(conc)],
                "python_aiohttp": lambda url, inp, out: [
                    sys.executable, BASELINE, url, inp, out, "--concurrency", str(conc)
                ],
            },
            sim_cpu=("taskset", "-c", "0"),
            client_cpu=("taskset", "-c", "1"),
        )
        med = {k: median([x["rows_per_s"] for x in v]) for k, v in res.items()}
        cpu = {k: median([x["cpu_us_per_row"] for x in v]) for k, v in res.items()}
        u, b, p = med["unlinker"], med["bare_loop"], med["python_aiohttp"]
        self.row(
            f"fair overhead: simulator on core 0, client on core 1 (`taskset`), {rows:,} rows, concurrency {conc}",
            "unlinker ≥ 0.6× the bare loop and ≥ 5× Python in rows/s",
            f"{u / b:.2f}× the bare loop, {u / p:.2f}× Python ({u:,.0f} / {b:,.0f} / {p:,.0f} rows/s); client CPU "
            f"{cpu['unlinker']:.1f} / {cpu['bare_loop']:.1f} / {cpu['python_aiohttp']:.1f} µs/row",
            len(res["unlinker"]),
            u / b >= 0.6 and u / p >= 5,
        )
        self.details["fair"] = res

    # -- what users write today ----------------------------------------------------------------
    def xargs(self):
        if not shutil.which("curl"):
            log("xargs: needs curl; skipped")
            return
        rows = 2_000 if self.quick else 5_000
        conc = 64
        inp = self.wd.input(rows)

        def build(url, inp, out):
            urls = out + ".urls"
            with open(inp) as f, open(urls, "w") as u:
                next(f)
                for line in f:
                    user, provider, ident = line.strip().split(",")
                    u.write(f"{url}/api/v2/users/{user.replace('|', '%7C')}/identities/{provider}/{ident}\n")
            script = (f"xargs -P {conc} -n 1 curl -s -o /dev/null -X DELETE "
                      f"-H 'Authorization: Bearer {TOKEN}' < '{urls}' && echo '{{}}'")
            return ["bash", "-c", script]

        res = self.throughput_pair("xargs", rows, {"xargs_curl": build})
        u = median([x["rows_per_s"] for x in res["unlinker"]])
        x = median([x["rows_per_s"] for x in res["xargs_curl"]])
        self.row(
            f"what users write today: `xargs -P {conc} curl` over the same {rows:,} rows",
            "unlinker's rows/s as a multiple of it",
            f"{u / x:.1f}× ({u:,.0f} vs {x:,.0f} rows/s)",
            len(res["unlinker"]),
            u > x,
        )
        self.details["xargs"] = res


# ---------------------------------------------------------------------------------------------
# Output


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def cmd(*c):
        try:
            return subprocess.run(c, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return "unknown"

    dirty = cmd("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": cmd("git", "rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else ""),
        "rustc": cmd("rustc", "--version"),
        "python": platform.python_version(),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
    }


def markdown(m, b, args, cmdline, took):
    out = []
    out.append("# unlinker benchmark results\n")
    out.append(f"Command: `{cmdline}` ({'quick' if args.quick else 'full'}: {args.runs} run(s) per figure, "
               f"took {took / 60:.1f} min)\n")
    out.append(
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['mem_gb']} GiB, Linux {m['kernel']}; shared and noisy. "
        f"Load average at start: {' '.join(m['loadavg_start'])}. {m['rustc']}; Python {m['python']}.  \n"
        f"Date: {m['date']}. Commit: {m['commit']}.\n"
    )
    out.append("Every figure is the median of the runs; every ratio is of medians measured in this same "
               "invocation. The simulator, the client under test and the harness all share the same cores.\n")
    out.append("| scenario | target | measured median | runs | met? |")
    out.append("|---|---|---|---|---|")
    for r in b.table:
        out.append(f"| {r['scenario']} | {r['target']} | {r['measured']} | {r['runs']} | {'yes' if r['met'] else '**no**'} |")
    out.append("")
    out.append("<details><summary>Every run (JSON)</summary>\n")
    out.append("```json")
    out.append(json.dumps(b.details, indent=1, default=str))
    out.append("```\n</details>\n")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 run per figure and shorter scenarios (a smoke test)")
    ap.add_argument("--runs", type=int, help="runs per figure (default 3, --quick 1)")
    ap.add_argument("--only", help=f"comma-separated scenarios: {','.join(ALL_SCENARIOS)}")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="concurrency of unlinker, the bare loop and the Python script in the throughput scenarios")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"), help="where to write the results")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--max-wait", type=float, default=30.0,
                    help="before each measured run, wait up to this many seconds for the CPUs to be idle "
                    "(other processes below 15%%); 0 = never wait")
    ap.add_argument("--bin-dir", help="take unlinker and unlinker-sim from this folder instead of target/release "
                    "(to measure another build, e.g. a proposed fix; the bare loop stays this checkout's)")
    ap.add_argument("--cmdline", default="bash bench/run.sh", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    scenarios = args.only.split(",") if args.only else ALL_SCENARIOS
    for s in scenarios:
        if s not in ALL_SCENARIOS:
            ap.error(f"unknown scenario {s}")
    if args.bin_dir:
        global UNLINKER, SIM
        UNLINKER = os.path.join(os.path.abspath(args.bin_dir), "unlinker")
        SIM = os.path.join(os.path.abspath(args.bin_dir), "unlinker-sim")
    for exe in (UNLINKER, SIM, BARE, TIME):
        if not os.access(exe, os.X_OK):
            sys.exit(f"{exe} is missing: build with `cargo build --release --bins --examples` (bench/run.sh does)")

    QUIET["max_wait"] = args.max_wait
    m = machine()
    base = tempfile.mkdtemp(prefix="unlinker-bench-", dir=os.environ.get("BENCH_TMPDIR"))
    log(f"working in {base}")
    started = time.monotonic()
    b = Bench(args, Workdir(base))
    try:
        for s in scenarios:
            log(f"scenario {s}")
            getattr(b, s)()
    finally:
        if args.keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    text = markdown(m, b, args, args.cmdline, time.monotonic() - started)
    with open(args.out, "w") as f:
        f.write(text)
    # The table on stdout.
    print(text.split("<details>")[0].rstrip())
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
