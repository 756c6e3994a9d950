"""Measure one idle ``streams worker``: its CPU over a window after a warm-up.

Usage (a broker must answer at STREAMS_KAFKA_BOOTSTRAP):

    .venv/bin/python scripts/idle_worker.py --label B1 [--code DIR] [--env K=V ...]
        [--warm 40] [--window 60] [--broker-pid PID]

``--code DIR`` runs the worker from another checkout's ``streams`` package (put first
on PYTHONPATH), the same interpreter and dependencies: the "before" side of a pair.
Prints one JSON line: the worker's user+system CPU as % of a core (from
/proc/PID/stat), by thread (/proc/PID/task/*/stat, named by comm), the broker's
cores when its pid is given, and the rest of the machine's busy cores (/proc/stat).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(path: str) -> float:
    """utime+stime of a /proc stat file, in seconds."""
    text = Path(path).read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def threads(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            key = f"{name}:{task.name}"
            out[key] = proc_cpu(str(task / "stat"))
        except OSError:
            continue
    return out


def machine_busy() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICK


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", required=True)
    parser.add_argument("--code", default=None)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--warm", type=float, default=40.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--broker-pid", type=int, default=None)
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "idle-runs"))
    args = parser.parse_args()

    run = Path(args.dir) / f"{args.label}-{uuid.uuid4().hex[:6]}"
    run.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        {
            "STREAMS_ENV": "development",
            "STREAMS_TOPIC_PREFIX": f"idle.{run.name}.",
            "STREAMS_APP_ID": f"idle-{run.name}",
            "STREAMS_STATE_DIR": str(run / "state"),
            "STREAMS_API_PORT": str(18000 + os.getpid() % 1000),
            "STREAMS_LOG_LEVEL": "INFO",
        }
    )
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    if args.code:
        env["PYTHONPATH"] = args.code
    load_at_start = os.getloadavg()[0]
    cli = [sys.executable, "-m", "streams"]
    subprocess.run([*cli, "topics", "create"], env=env, check=True, capture_output=True)
    with (run / "worker.log").open("wb") as log:
        worker = subprocess.Popen([*cli, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(args.warm)
        if worker.poll() is not None:
            raise SystemExit(f"worker exited early ({worker.returncode}); see {run}/worker.log")
        t0, m0, w0 = time.monotonic(), machine_busy(), proc_cpu(f"/proc/{worker.pid}/stat")
        th0 = threads(worker.pid)
        b0 = proc_cpu(f"/proc/{args.broker_pid}/stat") if args.broker_pid else 0.0
        time.sleep(args.window)
        t1, m1, w1 = time.monotonic(), machine_busy(), proc_cpu(f"/proc/{worker.pid}/stat")
        th1 = threads(worker.pid)
        b1 = proc_cpu(f"/proc/{args.broker_pid}/stat") if args.broker_pid else 0.0
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    wall = t1 - t0
    by_thread = {
        k: round((th1[k] - th0.get(k, 0.0)) / wall * 100, 3)
        for k in th1
        if th1[k] - th0.get(k, 0.0) > 0
    }
    result = {
        "label": args.label,
        "code": args.code or "worktree",
        "env": args.env,
        "load_at_start": load_at_start,
        "worker_pct": round((w1 - w0) / wall * 100, 3),
        "broker_cores": round((b1 - b0) / wall, 4) if args.broker_pid else None,
        "others_cores": round(((m1 - m0) - (w1 - w0) - (b1 - b0)) / wall, 3),
        "threads_pct": dict(sorted(by_thread.items(), key=lambda kv: -kv[1])),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
