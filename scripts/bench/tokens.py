#!/usr/bin/env python3
"""Log in seeded users through the local API and write their access tokens, one a line.

  tokens.py API_URL COUNT PASSWORD OUT      (users bench1..benchCOUNT@bench.example)

Used by scripts/bench.sh before the GET/POST /tasks load runs (wrk takes the tokens round-robin).
"""

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
        return json.loads(resp.read())["access_token"]


def main():
    api, count, password, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    emails = [f"bench{i}@bench.example" for i in range(1, count + 1)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        tokens = list(pool.map(lambda e: login(api, e, password), emails))
    with open(out, "w") as f:
        f.write("\n".join(tokens) + "\n")
    print(f"{len(tokens)} access tokens written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
