#!/usr/bin/env python3
"""Log in seeded users through the local API and write their access tokens, one a line.

  tokens.py API_URL COUNT PASSWORD OUT [--first N] [--refresh-out FILE] [--email ADDRESS]

Users benchN..bench(N+COUNT-1)@bench.example (N = --first, default 1), or, with --email, that
one address COUNT times (COUNT sessions of one user). --refresh-out also writes each session's
refresh token, one a line (a refresh token is good for one use: the refresh load run rotates them).

Used by scripts/bench.sh before the load runs (wrk takes the tokens round-robin).
"""

import argparse
import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def login(api, email, password):
    req = urllib.request.Request(
        f"{api}/auth/login",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = json.loads(resp.read())
        return body["access_token"], body["refresh_token"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("api")
    ap.add_argument("count", type=int)
    ap.add_argument("password")
    ap.add_argument("out")
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--refresh-out")
    ap.add_argument("--email")
    a = ap.parse_args()
    if a.email:
        emails = [a.email] * a.count
    else:
        emails = [f"bench{i}@bench.example" for i in range(a.first, a.first + a.count)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        pairs = list(pool.map(lambda e: login(a.api, e, a.password), emails))
    with open(a.out, "w") as f:
        f.write("\n".join(p[0] for p in pairs) + "\n")
    if a.refresh_out:
        with open(a.refresh_out, "w") as f:
            f.write("\n".join(p[1] for p in pairs) + "\n")
    print(f"{len(pairs)} access tokens written to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
