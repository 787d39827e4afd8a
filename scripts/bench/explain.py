#!/usr/bin/env python3
"""Drive every hot request once at a time and collect the plans PostgreSQL ran for it.

  explain.py drive API_URL PASSWORD DB_URL OUT_JSON
  explain.py collect LOG_FILE LOG_OFFSET DRIVE_JSON OUT_MD

scripts/bench.sh turns on auto_explain (ANALYZE, BUFFERS, nested statements, triggers) for the
scaled database only, starts a local API with one pooled connection on it, and runs `drive`: each
request below is sent REPEAT times in a row (so the connection's prepared statements reach the
plan they keep: PostgreSQL plans the first five executions for their parameters, then may switch
to a generic plan), with a marker statement (run through psql, so auto_explain logs it too)
before each. `collect` then reads the server log from the offset
the script noted, and writes, per request, the plan of each statement of its last execution.
These are the statements as the code sends them (no copy of the SQL to drift from it).
"""

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

REPEAT = 7


def call(api, method, path, token=None, body=None):
    headers = {}
    data = None
    if token:
        headers["authorization"] = f"Bearer {token}"
    if body is not None:
        headers["content-type"] = "application/json"
        data = json.dumps(body).encode()
    req = urllib.request.Request(f"{api}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, None


def login(api, email, password):
    status, body = call(api, "POST", "/auth/login", body={"email": email, "password": password})
    if status != 200:
        raise SystemExit(f"login {email}: {status}")
    return body


def marker(db_url, k):
    """A statement whose logged plan marks where step k begins (auto_explain logs it too)."""
    subprocess.run(["psql", "-X", "-q", "-w", "-A", "-t", db_url, "-c", f"SELECT 'explain-step:{k}'"],
                   check=True, stdout=subprocess.DEVNULL)


def drive(api, password, db_url, out):
    heavy = login(api, "heavy@bench.example", password)
    admin = login(api, "benchadmin@bench.example", password)
    ht = heavy["access_token"]
    at = admin["access_token"]
    # A cursor 5,000 tasks deep (50 pages of 100): the plan shows the index walk starting at the
    # cursor, not at the top of the user's tasks.
    cursor = None
    for _ in range(50):
        _, page = call(api, "GET", "/tasks?limit=100" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else ""), ht)
        cursor = page.get("next_cursor") if page else None
        if not cursor:
            break
    deep = f"/tasks?cursor={urllib.parse.quote(cursor)}" if cursor else "/tasks"
    created = []
    steps = []

    def step(name, fn, prepare=None):
        # What a step needs (fresh sessions, user ids) is made before its marker, so only the
        # step's own requests fall between its marker and the next.
        if prepare:
            marker(db_url, -1)  # what follows belongs to no step
            prepare()
        marker(db_url, len(steps))
        steps.append({"name": name})
        steps[-1]["statuses"] = [fn(i) for i in range(REPEAT)]

    def create(i):
        s, b = call(api, "POST", "/tasks", ht, {"title": f"explain {i}"})
        if b:
            created.append(b["id"])
        return s

    step("GET /tasks (first page, user with 9,000 tasks)", lambda i: call(api, "GET", "/tasks", ht)[0])
    step("GET /tasks?cursor=… (deep page, user with 9,000 tasks)", lambda i: call(api, "GET", deep, ht)[0])
    step("GET /tasks?completed=true", lambda i: call(api, "GET", "/tasks?completed=true", ht)[0])
    step("POST /tasks (user with 9,000 tasks)", create)
    step("GET /tasks/{id}", lambda i: call(api, "GET", f"/tasks/{created[i % len(created)]}", ht)[0])
    step("PATCH /tasks/{id}", lambda i: call(api, "PATCH", f"/tasks/{created[i % len(created)]}", ht, {"completed": True})[0])
    step("DELETE /tasks/{id}", lambda i: call(api, "DELETE", f"/tasks/{created[i]}", ht)[0])
    step("GET /auth/me", lambda i: call(api, "GET", "/auth/me", ht)[0])
    sessions = []
    step("POST /auth/login", lambda i: (sessions.append(login(api, f"bench{100 + i}@bench.example", password)), 200)[1])
    step("POST /auth/refresh", lambda i: call(api, "POST", "/auth/refresh", body={"refresh_token": sessions[i]["refresh_token"]})[0])
    step("POST /auth/signup", lambda i: call(api, "POST", "/auth/signup", body={"email": f"explain{i}.{int(time.time())}@bench.example", "password": password})[0])
    fresh = {}

    def logins(first):
        return lambda: fresh.update({first + i: login(api, f"bench{first + i}@bench.example", password) for i in range(REPEAT)})

    step("POST /auth/logout", lambda i: call(api, "POST", "/auth/logout", fresh[200 + i]["access_token"])[0], logins(200))
    step("POST /auth/logout-all", lambda i: call(api, "POST", "/auth/logout-all", fresh[300 + i]["access_token"])[0], logins(300))
    step("GET /admin/users (first page)", lambda i: call(api, "GET", "/admin/users", at)[0])
    # The email filter at four selectivities (users are bench<N>@bench.example): 11 matches, none,
    # about 1 % (bench99, bench990..999, bench9900..9999, ...) and every user.
    for label, needle in [("rare: 11 users", "bench4242"), ("no match", "nobody-at-all"),
                          ("about 1 %", "bench99"), ("every user", "bench.example")]:
        step(f"GET /admin/users?email={needle} (substring filter, {label})",
             lambda i, needle=needle: call(api, "GET", f"/admin/users?email={needle}", at)[0])
    def user_id(n):
        return fresh[n]["user"]["id"]

    step("GET /admin/users/{id}", lambda i: call(api, "GET", f"/admin/users/{user_id(400 + i)}", at)[0], logins(400))
    step("PATCH /admin/users/{id}", lambda i: call(api, "PATCH", f"/admin/users/{user_id(400 + i)}", at, {"disabled": True})[0])
    step("DELETE /admin/users/{id} (user with 10 tasks)", lambda i: call(api, "DELETE", f"/admin/users/{user_id(400 + i)}", at)[0])
    step("DELETE /auth/me (user with 10 tasks)", lambda i: call(
        api, "DELETE", "/auth/me", fresh[500 + i]["access_token"], {"password": password})[0], logins(500))
    marker(db_url, len(steps))
    with open(out, "w") as f:
        json.dump({"steps": steps}, f)


# --- collect -------------------------------------------------------------------------------

ENTRY = re.compile(r"LOG:  duration: ([\d.]+) ms  plan:$")
MARKER = re.compile(r"explain-step:(-?\d+)")
PLAN_LINE = re.compile(r"\((actual|cost=|never executed)")


def parse_log(text):
    """[(duration ms, block text)] of the auto_explain entries, in log order."""
    entries, cur = [], None
    for line in text.splitlines():
        m = ENTRY.search(line)
        if m:
            if cur:
                entries.append(cur)
            cur = (float(m.group(1)), [])
        elif cur and line.startswith("\t"):
            cur[1].append(line[1:])
        elif cur:
            entries.append(cur)
            cur = None
    if cur:
        entries.append(cur)
    return [(d, "\n".join(lines)) for d, lines in entries]


def query_of(block):
    """The statement text of an entry: the lines before the first plan line."""
    out = []
    for line in block.splitlines():
        if PLAN_LINE.search(line):
            break
        out.append(line.strip())
    return " ".join(out)


def collect(log_file, offset, drive_json, out_md):
    with open(log_file, "rb") as f:
        f.seek(int(offset))
        text = f.read().decode("utf-8", "replace")
    steps = json.load(open(drive_json))["steps"]
    by_step, step = {}, None
    for d, block in parse_log(text):
        m = MARKER.search(block)
        if m:
            step = int(m.group(1))
            continue
        if step is not None and step >= 0:
            by_step.setdefault(step, []).append((d, block))
    L = []
    for k, s in enumerate(steps):
        mine = by_step.get(k, [])
        # The last repetition's statements: walk back from the end, one per distinct statement.
        seen, last = set(), []
        for d, block in reversed(mine):
            key = query_of(block)
            if key in seen:
                continue
            seen.add(key)
            last.append((d, block))
        last.reverse()
        L.append(f"#### {s['name']}")
        L.append("")
        L.append(f"Answers: {', '.join(str(x) for x in s.get('statuses', []))}; "
                 f"{len(last)} distinct statement(s), each as run the last time:")
        L.append("")
        for d, block in last:
            L.append("```")
            L.append(block.rstrip())
            L.append("```")
            L.append("")
    open(out_md, "w").write("\n".join(L) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "drive":
        drive(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "collect":
        collect(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        raise SystemExit(__doc__)
