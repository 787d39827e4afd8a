#!/usr/bin/env python3
"""Cold start and peak memory of the function binaries, for scripts/bench.sh.

  coldstart.py lambda NAME BINARY --api URL --email E --password P --admin-email A \
               --runs N [--warm-events M] --out FILE [--log FILE]
  coldstart.py http BINARY --runs N --out FILE [--log FILE]

`lambda`: runs the release binary NAME against a tiny fake Lambda Runtime API on 127.0.0.1 (this
script): GET /2018-06-01/runtime/invocation/next serves one API Gateway event built from
tests/fixtures (with the Lambda-Runtime-* headers), and POST .../invocation/ID/response (or
/error) is the answer. For each run it records the time from spawning the process to its first
/next poll ("ready") and to the answer ("answered"), then reads VmHWM (peak RSS) from
/proc/PID/status and kills the process. Then one more process gets M events in a row (default
20): the median time per warm event and VmHWM after all of them (what a warm instance grows to).
Events that need a live session get a fresh one per run by
logging in through the local API at --api (not timed). DATABASE_URL, JWT_SECRET and the rate
limits come from this script's environment.

`http`: spawns the local API on a free loopback port and records the time from spawn to the first
HTTP answer (any status; the request is GET /tasks without a token, answered 401 by the gateway
logic), then its VmHWM, then stops it.

All traffic stays on 127.0.0.1. Prints one JSON document to --out.
"""

import argparse
import base64
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
PREFIX = "/2018-06-01/runtime"
TIMEOUT_S = 30.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_status(pid):
    """VmHWM and VmRSS in KiB from /proc/PID/status."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


# --- events -----------------------------------------------------------------------------------


def post_json(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def fresh_session(api, email, password):
    """Log in through the local API: access token, refresh token, user id, session id, role."""
    answer = post_json(f"{api}/auth/login", {"email": email, "password": password})
    token = answer["access_token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {
        "token": token,
        "refresh": answer["refresh_token"],
        "sub": claims["sub"],
        "sid": claims["sid"],
        "role": claims["role"],
        "exp": str(claims["exp"]),
    }


def fill(text, values):
    for key, value in values.items():
        text = text.replace(f"__{key}__", value)
    left = sorted(set(re.findall(r"__[A-Z_]+__", text)))
    if left:
        raise SystemExit(f"fixture placeholders left unfilled: {', '.join(left)}")
    return text


def rest_event(session, method, path, resource, body=None):
    """The REST (v1) list-tasks fixture, re-pointed at another route, with the authorizer context."""
    text = fill(
        (FIXTURES / "apigw-v1-list-tasks.json").read_text(),
        {"TOKEN": session["token"], "SUB": session["sub"], "SID": session["sid"], "ROLE": session["role"],
         "EXP": session["exp"]},
    )
    event = json.loads(text)
    event["httpMethod"] = method
    event["path"] = path
    event["resource"] = resource
    event["requestContext"]["httpMethod"] = method
    event["requestContext"]["path"] = "/prod" + path
    event["requestContext"]["resourcePath"] = resource
    if body is not None:
        event["body"] = json.dumps(body)
        for headers in (event["headers"],):
            headers["Content-Type"] = "application/json"
        event["multiValueHeaders"]["Content-Type"] = ["application/json"]
    return event


class NoEvent(Exception):
    """No event this script can make for the function (it is then reported as not measured)."""


def public_post(args, path, body):
    """The REST (v1) login fixture re-pointed at another public POST route, with this JSON body."""
    event = json.loads(
        fill((FIXTURES / "apigw-v1-login.json").read_text(), {"EMAIL": args.email, "PASSWORD": args.password})
    )
    event["path"] = event["resource"] = path
    event["requestContext"]["path"] = "/prod" + path
    event["requestContext"]["resourcePath"] = path
    event["body"] = json.dumps(body)
    return event


def build_event(name, args):
    """The event for one run of function NAME (fresh session where one is consumed)."""
    if name == "authorizer":
        s = fresh_session(args.api, args.email, args.password)
        text = fill((FIXTURES / "apigw-token-authorizer.json").read_text(), {"TOKEN": s["token"], "TASK_ID": str(uuid.uuid4())})
        return json.loads(text)
    if name == "tasks":
        s = fresh_session(args.api, args.email, args.password)
        text = fill(
            (FIXTURES / "apigw-v1-list-tasks.json").read_text(),
            {"TOKEN": s["token"], "SUB": s["sub"], "SID": s["sid"], "ROLE": s["role"], "EXP": s["exp"]},
        )
        return json.loads(text)
    if name == "login":
        text = fill((FIXTURES / "apigw-v1-login.json").read_text(), {"EMAIL": args.email, "PASSWORD": args.password})
        return json.loads(text)
    if name == "signup":
        email = f"coldstart-{uuid.uuid4().hex[:12]}@bench.example"
        text = fill((FIXTURES / "apigw-v1-signup.json").read_text(), {"EMAIL": email, "PASSWORD": args.password})
        return json.loads(text)
    if name == "account":
        s = fresh_session(args.api, args.email, args.password)
        return rest_event(s, "GET", "/auth/me", "/auth/me")
    if name == "logout":
        s = fresh_session(args.api, args.email, args.password)
        return rest_event(s, "POST", "/auth/logout", "/auth/logout")
    if name == "refresh":
        s = fresh_session(args.api, args.email, args.password)
        event = json.loads(
            fill((FIXTURES / "apigw-v1-login.json").read_text(), {"EMAIL": args.email, "PASSWORD": args.password})
        )
        event["path"] = event["resource"] = "/auth/refresh"
        event["requestContext"]["path"] = "/prod/auth/refresh"
        event["requestContext"]["resourcePath"] = "/auth/refresh"
        event["body"] = json.dumps({"refresh_token": s["refresh"]})
        return event
    if name == "admin":
        s = fresh_session(args.api, args.admin_email, args.password)
        return rest_event(s, "GET", "/admin/users", "/admin/users")
    if name == "recovery":
        # A public route: forgot-password for the bench account (it only queues a job).
        return public_post(args, "/auth/password/forgot", {"email": args.email})
    if name == "mfa-verify":
        # A public route: the second login step with an mfa_token that matches no challenge (401
        # after the lookup; no argon2 either way).
        return public_post(args, "/auth/mfa/verify", {"mfa_token": uuid.uuid4().hex, "code": "000000"})
    if name == "mfa":
        # New recovery codes for an account without a second factor: 409 mfa_not_enabled (no
        # argon2; enrolment would hash the password).
        s = fresh_session(args.api, args.email, args.password)
        return rest_event(s, "POST", "/auth/mfa/recovery-codes", "/auth/mfa/recovery-codes", {"code": "000000"})
    if name in ("cleanup", "mail-sender"):
        # An EventBridge scheduled event, as the hourly rule sends it.
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/cleanup"],
            "detail": {},
        }
    if name == "jwks":
        event = json.loads(
            fill((FIXTURES / "apigw-v1-login.json").read_text(), {"EMAIL": args.email, "PASSWORD": args.password})
        )
        event["httpMethod"] = event["requestContext"]["httpMethod"] = "GET"
        event["path"] = event["resource"] = "/.well-known/jwks.json"
        event["requestContext"]["path"] = "/prod/.well-known/jwks.json"
        event["requestContext"]["resourcePath"] = "/.well-known/jwks.json"
        event["body"] = None
        return event
    raise NoEvent(f"no local event for {name!r} (a Secrets Manager rotation needs AWS)")


# --- the fake Runtime API ---------------------------------------------------------------------


class Invocation:
    """The events to hand out in order, and what happened to each.

    The second event is held back until `gate` is set, so the peak memory after the first answer
    can be read before the process does anything else."""

    def __init__(self, events):
        self.events = [json.dumps(e).encode() for e in events]
        self.request_ids = [str(uuid.uuid4()) for _ in events]
        self.lock = threading.Lock()
        self.served = 0
        self.first_next = None
        self.served_at = {}
        self.answered_at = {}
        self.outcomes = {}
        self.bodies = {}
        self.first_done = threading.Event()
        self.ready = threading.Event()
        self.all_done = threading.Event()
        self.gate = threading.Event()
        self.release = threading.Event()

    def answer(self, request_id, outcome, body, now):
        with self.lock:
            if request_id in self.answered_at:
                return
            self.answered_at[request_id] = now
            self.outcomes[request_id] = outcome
            self.bodies[request_id] = body
            n = len(self.answered_at)
        if request_id == self.request_ids[0]:
            self.first_done.set()
        if n >= len(self.events):
            self.all_done.set()


def make_handler(inv):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet
            pass

        def _read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status, body=b"", headers=None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def do_GET(self):
            now = time.perf_counter()
            if self.path != f"{PREFIX}/invocation/next":
                self._send(404)
                return
            with inv.lock:
                if inv.first_next is None:
                    inv.first_next = now
                index = inv.served
                inv.served += 1
            inv.ready.set()
            if index >= len(inv.events):
                # No more events: hold the long poll until the run is over (the process is killed).
                inv.release.wait(TIMEOUT_S)
                self.close_connection = True
                return
            if index >= 1:
                inv.gate.wait(TIMEOUT_S)
            request_id = inv.request_ids[index]
            inv.served_at[request_id] = time.perf_counter()
            deadline = int((time.time() + 30) * 1000)
            self._send(
                200,
                inv.events[index],
                {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:bench",
                    "Lambda-Runtime-Trace-Id": "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c;Parent=1;Sampled=0",
                },
            )

        def do_POST(self):
            body = self._read_body()
            now = time.perf_counter()
            parts = self.path.split("/")
            # /2018-06-01/runtime/invocation/ID/response|error
            if self.path.startswith(f"{PREFIX}/invocation/") and parts[-1] in ("response", "error") and len(parts) == 6:
                self._send(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
                inv.answer(parts[4], parts[-1], body, now)
            elif self.path == f"{PREFIX}/init/error":
                self._send(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
                inv.answer(inv.request_ids[0], "init_error", body, now)
                inv.all_done.set()
            else:
                self._send(404)

    return Handler


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # The binary is killed after its answer: its open connections are reset. Not an error.
        pass


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def describe(body):
    """The status of a function's answer: statusCode, the policy's effect, or the JSON itself."""
    try:
        answer = json.loads(body or b"null")
    except ValueError:
        return None
    if isinstance(answer, dict) and "statusCode" in answer:
        return answer["statusCode"]
    if isinstance(answer, dict) and "policyDocument" in answer:
        effects = [s.get("Effect") for s in answer["policyDocument"].get("Statement", [])]
        return "policy " + ",".join(str(e) for e in effects)
    if answer is not None:
        return json.dumps(answer)[:80]
    return None


def lambda_run(name, binary, events, log):
    """Spawn BINARY, hand it EVENTS one after the other; time the first, read memory after the
    first and after the last."""
    inv = Invocation(events)
    server = QuietServer(("127.0.0.1", 0), make_handler(inv))
    server.daemon_threads = True
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("JWT_SECRET_ARN", "DATABASE_URL_SECRET_ARN")
    }
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_REGION": "us-east-1",
        }
    )
    mem_first, mem_last, exited = {}, {}, None
    try:
        start = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        if events:
            first = inv.first_done.wait(TIMEOUT_S)
        else:
            first = inv.ready.wait(TIMEOUT_S)
        mem_first = vm_status(proc.pid)
        inv.gate.set()
        finished = inv.all_done.wait(TIMEOUT_S * max(1, len(events) // 10)) if events else first
        mem_last = vm_status(proc.pid)
        exited = proc.poll()
        stop(proc)
    finally:
        inv.gate.set()
        inv.release.set()
        server.shutdown()
        server.server_close()
    rid0 = inv.request_ids[0] if events else None
    if not events:
        return {
            "events": 0,
            "ready_ms": None if inv.first_next is None else (inv.first_next - start) * 1e3,
            "answered_ms": None,
            "outcome": "ready" if first else "timeout",
            "status": None,
            "exited_early": exited,
            "vm_hwm_kib": mem_first.get("VmHWM"),
            "vm_rss_kib": mem_first.get("VmRSS"),
        }
    result = {
        "events": len(events),
        "ready_ms": None if inv.first_next is None else (inv.first_next - start) * 1e3,
        "answered_ms": (inv.answered_at[rid0] - start) * 1e3 if rid0 in inv.answered_at else None,
        "outcome": inv.outcomes.get(rid0, "timeout") if first else "timeout",
        "status": describe(inv.bodies.get(rid0)),
        "exited_early": exited,
        "vm_hwm_kib": mem_first.get("VmHWM"),
        "vm_rss_kib": mem_first.get("VmRSS"),
    }
    if len(events) > 1:
        warm = [
            (inv.answered_at[r] - inv.served_at[r]) * 1e3
            for r in inv.request_ids[1:]
            if r in inv.answered_at and r in inv.served_at
        ]
        result.update(
            {
                "warm_answered": len(warm),
                "warm_ms_median": statistics.median(warm) if warm else None,
                "warm_ms_max": max(warm) if warm else None,
                "warm_outcomes": sorted({f"{inv.outcomes.get(r)} {describe(inv.bodies.get(r))}" for r in inv.request_ids[1:]}),
                "vm_hwm_kib_after_all": mem_last.get("VmHWM"),
                "vm_rss_kib_after_all": mem_last.get("VmRSS"),
                "all_answered": finished,
            }
        )
    return result


# --- the local API ----------------------------------------------------------------------------


def http_answer(port):
    """Send GET /tasks (no token) and return the status code, or None when nobody answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = s.recv(64)
    except OSError:
        return None
    if not data.startswith(b"HTTP/1."):
        return None
    return int(data.split()[1])


def http_run(binary, log):
    port = free_port()
    env = dict(os.environ, PORT=str(port))
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    status = None
    answered = None
    try:
        while time.perf_counter() - start < TIMEOUT_S and proc.poll() is None:
            status = http_answer(port)
            if status is not None:
                answered = time.perf_counter()
                break
            time.sleep(0.001)
        mem = vm_status(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        stop(proc)
    return {
        "answered_ms": None if answered is None else (answered - start) * 1e3,
        "status": status,
        "outcome": "response" if answered else "timeout",
        "vm_hwm_kib": mem.get("VmHWM"),
        "vm_rss_kib": mem.get("VmRSS"),
    }


def summarize(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    lam = sub.add_parser("lambda")
    lam.add_argument("name")
    lam.add_argument("binary")
    lam.add_argument("--api", required=True)
    lam.add_argument("--email", required=True)
    lam.add_argument("--password", required=True)
    lam.add_argument("--admin-email", required=True)
    lam.add_argument("--warm-events", type=int, default=20, help="events for one extra warm run (1: none)")
    http = sub.add_parser("http")
    http.add_argument("binary")
    for p in (lam, http):
        p.add_argument("--runs", type=int, default=5)
        p.add_argument("--out", required=True)
        p.add_argument("--log", default=os.devnull)
    args = parser.parse_args()

    runs = []
    name = args.name if args.mode == "lambda" else "local-api"
    with open(args.log, "ab") as log:
        for _ in range(args.runs):
            if args.mode == "lambda":
                try:
                    event = build_event(args.name, args)
                except NoEvent as e:
                    # Time it to its first poll of the Runtime API only, with no event to answer.
                    runs = [lambda_run(args.name, args.binary, [], log) for _ in range(args.runs)]
                    doc = {
                        "name": name,
                        "mode": args.mode,
                        "runs": runs,
                        "ready_ms": summarize(runs, "ready_ms"),
                        "answered_ms": None,
                        "vm_hwm_kib": summarize(runs, "vm_hwm_kib"),
                        "outcomes": sorted({str(r.get("outcome")) for r in runs}),
                        "ready_only": str(e),
                        "warm": None,
                    }
                    Path(args.out).write_text(json.dumps(doc, indent=1))
                    r = doc["ready_ms"]
                    print(f"{name:<12} ready only ({e}): median {r['median']:.1f} ms" if r else f"{name:<12} never ready",
                          file=sys.stderr)
                    return 0 if all(x.get("outcome") == "ready" for x in runs) else 1
                runs.append(lambda_run(args.name, args.binary, [event], log))
            else:
                runs.append(http_run(args.binary, log))
        warm = None
        if args.mode == "lambda" and args.warm_events > 1:
            events = [build_event(args.name, args) for _ in range(args.warm_events)]
            warm = lambda_run(args.name, args.binary, events, log)
    doc = {
        "name": name,
        "mode": args.mode,
        "runs": runs,
        "ready_ms": summarize(runs, "ready_ms"),
        "answered_ms": summarize(runs, "answered_ms"),
        "vm_hwm_kib": summarize(runs, "vm_hwm_kib"),
        "outcomes": sorted({str(r.get("outcome")) + " " + str(r.get("status")) for r in runs}),
        "warm": warm,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1))
    a = doc["answered_ms"]
    print(
        f"{name:<12} answered median {a['median']:.1f} ms (min {a['min']:.1f}, max {a['max']:.1f})"
        if a
        else f"{name:<12} never answered",
        f"peak RSS max {doc['vm_hwm_kib']['max'] / 1024:.1f} MiB" if doc["vm_hwm_kib"] else "",
        doc["outcomes"],
        file=sys.stderr,
    )
    if warm:
        print(
            f"{'':<12} warm: {warm.get('warm_answered')} more events, median {warm.get('warm_ms_median') or 0:.1f} ms, "
            f"peak RSS after all {(warm.get('vm_hwm_kib_after_all') or 0) / 1024:.1f} MiB {warm.get('warm_outcomes')}",
            file=sys.stderr,
        )
    ok = all(r.get("outcome") == "response" for r in runs)
    return 0 if ok and (warm is None or warm.get("all_answered")) else 1


if __name__ == "__main__":
    sys.exit(main())
