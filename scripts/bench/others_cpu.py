#!/usr/bin/env python3
"""CPU time used by processes that are not this benchmark's, between two snapshots.

The 1-minute load average at the end of a run mostly counts the run's own last load sections,
so it cannot say whether something else competed for the CPU. This can:

    others_cpu.py snap FILE ROOT_PID      # every process outside ROOT_PID's tree, not PostgreSQL
    others_cpu.py diff BEFORE AFTER OUT   # their CPU seconds in between, into OUT (key=value)

A process counts with its own time and the time of the children it has waited for (so a
`cargo build` counts its compiler runs); it is keyed by pid and start time, so a reused pid is
a new process. PostgreSQL's processes are left out: the benchmark drives them (a second server
on the machine is left out too, which the report says). Processes that start and end between the
snapshots without a waiting parent outside the tree are not seen.
"""
import json
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime 14, stime 15, cutime 16, cstime 17, starttime 22.
    ppid = int(rest[1])
    cpu = sum(int(rest[i]) for i in (11, 12, 13, 14))
    return comm, ppid, cpu, rest[19]


def snap(path, root):
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                procs[int(name)] = stat(name)
            except (OSError, ValueError, IndexError):
                pass  # gone meanwhile
    ours = {root}
    changed = True
    while changed:
        changed = False
        for pid, (_, ppid, _, _) in procs.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    # The benchmark's own ancestors (the shell that started it) are not competition either.
    pid = root
    while pid in procs and procs[pid][1] > 1:
        pid = procs[pid][1]
        ours.add(pid)
    others = {
        f"{pid}:{start}": [comm, cpu]
        for pid, (comm, _, cpu, start) in procs.items()
        if pid not in ours and comm != "postgres" and cpu > 0
    }
    with open(path, "w") as f:
        json.dump({"at": time.time(), "procs": others}, f)


def diff(before_path, after_path, out):
    with open(before_path) as f:
        before = json.load(f)
    with open(after_path) as f:
        after = json.load(f)
    used = []
    for key, (comm, cpu) in after["procs"].items():
        was = before["procs"].get(key, [comm, 0])[1]
        if cpu > was:
            used.append(((cpu - was) / TICK, comm))
    used.sort(reverse=True)
    total = sum(s for s, _ in used)
    wall = max(after["at"] - before["at"], 1e-9)
    top = ", ".join(f"{comm} {s:.1f} s" for s, comm in used[:5]) or "none"
    with open(out, "w") as f:
        f.write(f"others_cpu_s={total:.2f}\nwall_s={wall:.1f}\ncores={os.cpu_count()}\ntop={top}\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "snap":
        snap(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 5 and sys.argv[1] == "diff":
        diff(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
