#!/usr/bin/env python3
"""What users write today: unlink Auth0 identities from a CSV with asyncio + aiohttp.

The benchmark's "versus" scenario runs this against the same simulator, input and concurrency as
`unlinker` and compares rows/s. It is deliberately the small, honest script a platform engineer
writes for a one-off migration: read the CSV, DELETE each identity with the bearer token, bound
the concurrency with a semaphore, write a result CSV. No rate limiting, no retries, no resume.

    python3 bench/baseline_aiohttp.py BASE_URL INPUT.csv RESULT.csv [--concurrency N] [--token T]

Prints one JSON line: {"rows": ..., "elapsed_s": ..., "rows_per_s": ..., "ok": ..., "not_ok": ...}.
"""

import argparse
import asyncio
import csv
import json
import time
from urllib.parse import quote

import aiohttp


async def unlink(session, sem, base_url, token, line, row):
    url = "{}/api/v2/users/{}/identities/{}/{}".format(
        base_url,
        quote(row["user_id"], safe=""),
        quote(row["provider"], safe=""),
        quote(row["identity_user_id"], safe=""),
    )
    async with sem:
        try:
            async with session.delete(
                url, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                body = await resp.text()
                if resp.status == 200:
                    outcome = "unlinked"
                elif resp.status == 404:
                    outcome = "absent"
                else:
                    outcome = "failed"
                return line, row, resp.status, outcome, "" if resp.status == 200 else body[:200]
        except aiohttp.ClientError as e:
            return line, row, "", "failed", str(e)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("input")
    ap.add_argument("result")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--token", default="sim-token")
    args = ap.parse_args()
    base_url = args.base_url.rstrip("/")

    started = time.monotonic()
    with open(args.input, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    sem = asyncio.Semaphore(args.concurrency)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        results = await asyncio.gather(
            *(
                unlink(session, sem, base_url, args.token, i + 2, row)
                for i, row in enumerate(rows)
            )
        )

    ok = 0
    with open(args.result, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["line", "user_id", "provider", "identity_user_id", "http_status", "outcome", "message"])
        for line, row, status, outcome, message in results:
            ok += outcome == "unlinked"
            w.writerow([line, row["user_id"], row["provider"], row["identity_user_id"], status, outcome, message])
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "rows": len(rows),
                "elapsed_s": round(elapsed, 4),
                "rows_per_s": round(len(rows) / elapsed, 1),
                "ok": ok,
                "not_ok": len(rows) - ok,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
