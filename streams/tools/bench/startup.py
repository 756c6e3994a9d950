"""Start-up cost of the CLI and the worker, measured from outside (stdlib only):
``python -m streams.tools.bench.startup``.

CLI: wall time of ``streams --help`` (the console script), ``--cli-runs`` runs.
Worker: time from spawning ``streams worker`` until its API answers ``/metrics``
with 200 (and until ``/healthz`` says ready), ``--worker-runs`` runs, each on a
fresh state directory against the broker at STREAMS_KAFKA_BOOTSTRAP. Every wait
is bounded by ``--timeout`` seconds. It imports nothing of the package, so the
same script measures any checkout (``PYTHONPATH=<old tree>`` for a before/after).
Topics are created once per run under their own prefix (``startup-<pid>.``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:  # noqa: S310 - loopback only
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def cli_runs(streams: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([streams, "--help"], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def worker_run(streams: str, env: dict[str, str], timeout: float) -> tuple[float, float]:
    port = free_port()
    state = tempfile.mkdtemp(prefix="streams-startup-")
    env = {**env, "STREAMS_API_PORT": str(port), "STREAMS_STATE_DIR": state}
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [streams, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = ready = math.nan
    try:
        deadline = t0 + timeout
        while time.perf_counter() < deadline and proc.poll() is None:
            if math.isnan(metrics) and status(base + "/metrics") == 200:
                metrics = time.perf_counter() - t0
            if not math.isnan(metrics) and status(base + "/healthz") == 200:
                ready = time.perf_counter() - t0
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(state, ignore_errors=True)
    return metrics, ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", default=str(Path(sys.executable).with_name("streams")))
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--worker-runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    prefix = f"startup-{os.getpid()}."
    env = {
        **os.environ,
        "STREAMS_TOPIC_PREFIX": prefix,
        "STREAMS_ENV": "development",
        "STREAMS_APP_ID": f"startup-{os.getpid()}",
    }
    out: dict[str, object] = {}
    cli = cli_runs(args.streams, args.cli_runs)
    out["cli_help_s"] = {"median": statistics.median(cli), "min": min(cli), "runs": cli}
    if args.worker_runs:
        subprocess.run(
            [args.streams, "topics", "create"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        runs = [worker_run(args.streams, env, args.timeout) for _ in range(args.worker_runs)]
        m = [r[0] for r in runs]
        h = [r[1] for r in runs]
        out["worker_metrics_s"] = {"median": statistics.median(m), "min": min(m), "runs": m}
        out["worker_ready_s"] = {"median": statistics.median(h), "min": min(h), "runs": h}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
