"""The receiver's own ceiling: how many signed webhooks per second it takes on its own.

A fast receiver must not be the bottleneck of a benchmark, so every run that
reports a delivery rate measures the receiver first, in the same run, with
the same request the pipeline sends (a signed ~420-byte envelope that the
receiver verifies and records). The load comes from ``wrk`` when it is
installed (C, one thread: it leaves the most CPU to the receiver), else from
:mod:`streams.tools.bench.blast`, a raw aiohttp client.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from streams.tools.bench.procs import Processes, Receivers

ENDPOINT = "_ceiling"


def signed_request(secret: str) -> tuple[bytes, dict[str, str]]:
    """A body like the pipeline's and the standard signature headers for it."""
    from streams.signing import SignatureInput, get_profile
    from streams.tools.bench.load import EVENT_DATA, EVENT_TYPE

    body = orjson.dumps(
        {
            "id": "evt_ceiling",
            "type": EVENT_TYPE,
            "tenant_id": "t_ceiling",
            "occurred_at": "2026-01-01T00:00:00.000Z",
            "data": EVENT_DATA,
        }
    )
    headers = {"content-type": "application/json", "webhook-attempt": "1"}
    headers.update(
        get_profile("standard").headers(
            SignatureInput(
                msg_id="msg_ceiling",
                timestamp=int(time.time()),
                body=body,
                event_type=EVENT_TYPE,
                secrets=(secret,),
            )
        )
    )
    return body, headers


def _lua(body: bytes, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body.decode()}]==]"]
    for name, value in headers.items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    return "\n".join(lines) + "\n"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        return None
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3)


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, p50/p99 latency and non-2xx answers from wrk's ``--latency`` report."""
    out: dict[str, Any] = {}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps:
        out["rps"] = round(float(rps.group(1)))
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", output, re.MULTILINE)
        if m:
            out[f"p{q}_ms"] = _ms(m.group(1))
    total = re.search(r"(\d+) requests in", output)
    if total:
        out["requests"] = int(total.group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    out["non_2xx"] = int(bad.group(1)) if bad else 0
    errors = re.search(r"Socket errors:(.*)", output)
    if errors:
        out["socket_errors"] = errors.group(1).strip()
    return out


def measure(
    procs: Processes,
    receivers: Receivers,
    secret: str,
    work_dir: Path,
    *,
    seconds: float = 5.0,
    concurrency: int = 64,
) -> dict[str, Any]:
    """Blast the receiver(s) for ``seconds``; requests/s and latency."""
    body, headers = signed_request(secret)
    url = receivers.url(ENDPOINT)
    wrk = shutil.which("wrk")
    log = work_dir / "ceiling.log"
    if wrk:
        script = work_dir / "ceiling.lua"
        script.write_text(_lua(body, headers))
        argv = [
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        tool = f"wrk -t1 -c{concurrency} -d{max(1, round(seconds))}s"
    else:
        argv = [
            sys.executable,
            "-m",
            "streams.tools.bench.blast",
            "--url",
            url,
            "--seconds",
            str(seconds),
            "--concurrency",
            str(concurrency),
            "--body-file",
            str(_write(work_dir / "ceiling.body", body)),
            "--headers",
            orjson.dumps(headers).decode(),
        ]
        tool = f"python -m streams.tools.bench.blast (aiohttp) C={concurrency} {seconds:g}s"
    proc = procs.start("ceiling", argv, log=log)
    try:
        proc.wait(seconds + 60)
    except subprocess.TimeoutExpired:
        procs.kill(proc)
    procs.stop(proc)
    output = log.read_text(errors="replace") if log.exists() else ""
    result = parse_wrk(output) if wrk else _parse_json_tail(output)
    result.update({"tool": tool, "receiver_processes": receivers.count, "signed": True})
    return result


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _parse_json_tail(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(parsed, dict):
            return parsed
    return {"error": output[-500:]}
