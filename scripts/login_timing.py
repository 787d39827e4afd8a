#!/usr/bin/env python3
"""Measure login time per failure branch against a running local API.

Branches: unknown email, wrong password, disabled account (wrong and right password), an
over-long password, and a wrong password for an account whose stored hash has older, cheaper
argon2 parameters than the server's (STALE_ACCOUNT, made by `--signup` against a server at the
old cost). Requests are interleaved (one of each branch per round, in a shuffled order)
so drift in machine load hits every branch alike. Prints and writes the medians and the spread.

Usage: login_timing.py BASE_URL DATABASE_URL ROUNDS OUTPUT_MD
       login_timing.py --signup BASE_URL   (prints "email password" of a new account)
Needs psql (to disable the test account). Standard library only.
"""
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid


def post(base, path, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method="POST",
                                 headers={"content-type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            payload = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        payload = err.read()
        status = err.code
    return time.perf_counter() - start, status, payload


def signup_stale(base):
    email = f"timing-stale-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery " + uuid.uuid4().hex[:6]
    _, status, body = post(base, "/auth/signup", {"email": email, "password": password})
    if status != 201:
        sys.exit(f"signup failed: {status} {body!r}")
    print(email, password)


def main():
    if sys.argv[1] == "--signup":
        signup_stale(sys.argv[2])
        return
    base, db_url, rounds, output = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    memory_kib = os.environ.get("ARGON2_MEMORY_KIB", "19456")
    stale = os.environ.get("STALE_ACCOUNT", "").split(" ", 1)
    password = "correct horse battery " + uuid.uuid4().hex[:6]
    active = f"timing-{uuid.uuid4().hex[:8]}@example.com"
    disabled = f"timing-{uuid.uuid4().hex[:8]}@example.com"
    for email in (active, disabled):
        _, status, body = post(base, "/auth/signup", {"email": email, "password": password})
        if status != 201:
            sys.exit(f"signup failed: {status} {body!r}")
    subprocess.run(["psql", "-X", "-q", db_url, "-c",
                    f"UPDATE users SET disabled = true WHERE email = '{disabled}'"], check=True)

    branches = {
        "unknown email": {"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": password},
        "wrong password": {"email": active, "password": password + "x"},
        "disabled, wrong password": {"email": disabled, "password": password + "x"},
        "disabled, right password (403)": {"email": disabled, "password": password},
        "over-long password (4,000 chars)": {"email": active, "password": "p" * 4000},
    }
    if len(stale) == 2:
        old_kib = os.environ.get("STALE_MEMORY_KIB", "?")
        branches[f"stale cheaper hash (m={old_kib} KiB), wrong password"] = {
            "email": stale[0], "password": stale[1] + "x"}
    expected = {"disabled, right password (403)": 403}
    samples = {name: [] for name in branches}
    bodies = {}
    for _ in range(5):  # warm-up
        for body in branches.values():
            post(base, "/auth/login", body)
    for _ in range(rounds):
        order = list(branches.items())
        random.shuffle(order)
        for name, body in order:
            elapsed, status, payload = post(base, "/auth/login", body)
            want = expected.get(name, 401)
            if status != want:
                sys.exit(f"{name}: expected {want}, got {status} {payload!r}")
            samples[name].append(elapsed * 1000)
            bodies.setdefault(status, set()).add(payload)

    medians = {name: statistics.median(v) for name, v in samples.items()}
    overall = statistics.median([x for v in samples.values() for x in v])
    spread = max(medians.values()) - min(medians.values())
    allowed = max(10.0, overall * 0.10)
    ok = spread <= allowed
    same_401_body = len(bodies.get(401, set())) == 1
    lines = [
        "# Login timing per failure branch",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} by `scripts/login-timing.sh {rounds}`:"
        f" {rounds} interleaved rounds against the release local API on this machine"
        f" (argon2id m={memory_kib} KiB, t=2, p=1; rate limits raised for the run).",
        "",
        "| branch | median ms | p90 ms | n |",
        "|---|---|---|---|",
    ]
    for name, values in samples.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        lines.append(f"| {name} | {medians[name]:.2f} | {p90:.2f} | {len(values)} |")
    lines += [
        "",
        f"Overall median {overall:.2f} ms; spread of the medians {spread:.2f} ms;"
        f" allowed max(10 ms, 10 % of the median) = {allowed:.2f} ms: {'PASS' if ok else 'FAIL'}.",
        f"Every 401 body byte-identical: {'yes' if same_401_body else 'NO'}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with open(output, "w", encoding="utf-8") as fh:
        fh.write(text)
    sys.exit(0 if ok and same_401_body else 1)


if __name__ == "__main__":
    main()
