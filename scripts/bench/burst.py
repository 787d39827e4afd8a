#!/usr/bin/env python3
"""A burst of concurrent logins, each account once, all sent at the same instant.

  burst.py API_URL FIRST COUNT PASSWORD OUT_JSON [--timeout SECONDS]

Opens COUNT connections to the local API first (so connecting is not part of the burst), then
sends POST /auth/login for benchFIRST..bench(FIRST+COUNT-1)@bench.example, one on each
connection, all released together, and reads every answer whole. Latency is from the moment the
request was written to the last byte of the answer. An answer counts as *accepted* when it is 2xx,
or 429/503 with a `Retry-After` header (a limit that says when to come back); anything else, a
connection closed or reset without an answer, or no answer within the timeout, is listed.

Writes one JSON object to OUT_JSON (and prints it): requests, accepted, statuses, retry_after
(per 429/503: with/without), dropped (no answer), timed_out, latency_ms percentiles (p50, p95,
p99, max over answered requests), wall_s (first send to last answer).
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.parse


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


async def one(host, port, email, password, start, timeout):
    body = json.dumps({"email": email, "password": password}).encode()
    head = (
        f"POST /auth/login HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as e:
        return {"outcome": "connect_failed", "error": str(e)}
    await start.wait()
    t0 = time.perf_counter()
    try:
        writer.write(head + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    except asyncio.TimeoutError:
        writer.close()
        return {"outcome": "timed_out", "sent_at": t0}
    except OSError as e:
        return {"outcome": "dropped", "error": str(e), "sent_at": t0}
    t1 = time.perf_counter()
    writer.close()
    if not raw:
        return {"outcome": "dropped", "error": "closed without an answer", "sent_at": t0}
    head_text = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head_text.split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return {"outcome": "dropped", "error": f"not HTTP: {lines[0][:80]!r}", "sent_at": t0}
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return {"outcome": "answered", "status": status, "retry_after": "retry-after" in headers,
            "ms": (t1 - t0) * 1e3, "sent_at": t0, "done_at": t1}


async def run(api, first, count, password, timeout):
    u = urllib.parse.urlsplit(api)
    host, port = u.hostname, u.port or 80
    start = asyncio.Event()
    jobs = [asyncio.create_task(one(host, port, f"bench{i}@bench.example", password, start, timeout))
            for i in range(first, first + count)]
    # Let every connection open before the burst.
    await asyncio.sleep(0.5 + count / 2000)
    start.set()
    return await asyncio.gather(*jobs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("api")
    ap.add_argument("first", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("password")
    ap.add_argument("out")
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    results = asyncio.run(run(a.api, a.first, a.count, a.password, a.timeout))
    answered = [r for r in results if r["outcome"] == "answered"]
    statuses, retry = {}, {}
    accepted = 0
    for r in answered:
        s = r["status"]
        statuses[str(s)] = statuses.get(str(s), 0) + 1
        if s in (429, 503):
            key = f"{s} {'with' if r['retry_after'] else 'without'} Retry-After"
            retry[key] = retry.get(key, 0) + 1
        if 200 <= s < 300 or (s in (429, 503) and r["retry_after"]):
            accepted += 1
    ms = sorted(r["ms"] for r in answered)
    sent = [r["sent_at"] for r in results if "sent_at" in r]
    done = [r["done_at"] for r in answered]
    out = {
        "requests": a.count,
        "accepted": accepted,
        "answered": len(answered),
        "statuses": statuses,
        "retry_after": retry,
        "dropped": sum(1 for r in results if r["outcome"] in ("dropped", "connect_failed")),
        "timed_out": sum(1 for r in results if r["outcome"] == "timed_out"),
        "errors": sorted({r.get("error", "") for r in results if r.get("error")})[:5],
        "latency_ms": {"p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
                       "max": ms[-1] if ms else None, "min": ms[0] if ms else None},
        "wall_s": (max(done) - min(sent)) if done and sent else None,
        "timeout_s": a.timeout,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    print(json.dumps(out), file=sys.stderr)


if __name__ == "__main__":
    main()
