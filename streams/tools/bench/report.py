"""Results: the machine they came from, JSON files, and sections of docs/benchmarks.md.

Each scenario owns one section of the Markdown file, between
``<!-- bench:<scenario>:start -->`` and ``<!-- bench:<scenario>:end -->``; a
run replaces its section and leaves the rest of the file (the hand-written
analysis) alone.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

DOC_HEADER = """# Benchmarks

Every number in this file comes from `streams bench`, which anyone can rerun
(see "How to run" below). Sections between `bench:` markers are written by the
harness; the text around them is the analysis.

"""

LIBRARIES = ("faust-streaming", "aiokafka", "aiohttp", "confluent-kafka", "uvloop", "orjson")


def machine_info(kafka_version: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "kafka": kafka_version or "unknown",
        "libraries": {},
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info["libraries"][name] = importlib.metadata.version(name)
    with contextlib.suppress(Exception):
        import confluent_kafka

        info["libraries"]["librdkafka"] = confluent_kafka.libversion()[0]
    info["commit"] = _git_commit()
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _git_commit() -> str | None:
    """The checked-out commit and whether the tree differs from it (read-only git)."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+uncommitted changes" if dirty else "")


def command_line(argv: list[str] | None = None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return "streams " + " ".join(args)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_json(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{results['scenario']}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2, default=str) + b"\n")
    return path


# -- Markdown --------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:,.1f}"
        return f"{value:,.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|")


def _table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return out


def _met(value: bool | None) -> str:
    return "-" if value is None else ("**met**" if value else "**missed**")


def render_section(results: dict[str, Any]) -> str:
    name = results["scenario"]
    lines = [f"<!-- bench:{name}:start -->", f"### `{name}`", "", results.get("summary", ""), ""]
    status = "checks passed" if results.get("ok") else "**checks FAILED**"
    lines.append(
        f"Run {results.get('started_at', '?')} (took {fmt(results.get('took_s'))} s): "
        f"`{results.get('command', '')}` · result: {status}"
        + (" · smoke size" if results.get("smoke") else "")
    )
    lines.append("")
    targets = results.get("targets") or []
    if targets:
        lines += _table(
            ["target", "measured", "met"],
            [[t["target"], t["measured"], _met(t.get("met"))] for t in targets],
        )
        lines.append("")
    metrics = results.get("metrics") or {}
    if metrics:
        lines += _table(["metric", "value"], [[k, v] for k, v in metrics.items()])
        lines.append("")
    for table in results.get("tables") or []:
        if table.get("title"):
            lines.append(f"{table['title']}:")
            lines.append("")
        lines += _table(table["columns"], table["rows"])
        lines.append("")
    m = results.get("machine") or {}
    lines.append(
        f"- Machine: {m.get('cores')} cores ({m.get('cpu')}), {m.get('memory_gib')} GiB, "
        f"{m.get('os')}; Python {m.get('python')}; Kafka {m.get('kafka')}; "
        f"load average at start {fmt(m.get('load_avg_at_start'))}; commit {m.get('commit')}"
    )
    ceiling = results.get("ceiling")
    if ceiling:
        lines.append(
            f"- Receiver ceiling (same run): {fmt(ceiling.get('rps'))} signed requests/s "
            f"({ceiling.get('tool')}, {ceiling.get('receiver_processes')} receiver process(es)), "
            f"p50 {fmt(ceiling.get('p50_ms'))} ms, p99 {fmt(ceiling.get('p99_ms'))} ms, "
            f"non-2xx {fmt(ceiling.get('non_2xx'))}"
        )
    cpu = results.get("cpu")
    if cpu:
        parts = [f"{k.removesuffix('_cores')} {fmt(v)}" for k, v in cpu.items() if k != "wall_s"]
        lines.append(f"- CPU while measuring (cores busy, of {m.get('cores')}): {', '.join(parts)}")
    checks = results.get("checks")
    if checks:
        lines.append(
            f"- Ledger check: {fmt(checks.get('expected_pairs'))} (event, subscription) pairs "
            f"expected, {fmt(checks.get('delivered_pairs'))} delivered, "
            f"{fmt(checks.get('parked_pairs'))} parked in the DLQ "
            f"({fmt(checks.get('parked_reasons') or {}) or 'none'}), "
            f"**{fmt(checks.get('lost_pairs'))} lost**; "
            f"{fmt(checks.get('duplicates'))} duplicate deliveries; "
            f"{fmt(checks.get('invalid_signatures'))} bad signatures; "
            f"{fmt(checks.get('webhook_id_mismatches'))} webhook-id mismatches"
        )
    for note in results.get("notes") or []:
        lines.append(f"- {note}")
    lines.append(f"- Raw results: `docs/bench-results/{name}.json`")
    lines.append(f"<!-- bench:{name}:end -->")
    return "\n".join(lines) + "\n"


def update_doc(doc: Path, results: dict[str, Any]) -> None:
    """Replace (or append) the scenario's section of ``doc``."""
    name = results["scenario"]
    section = render_section(results)
    text = doc.read_text() if doc.exists() else DOC_HEADER
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)}:start -->.*?<!-- bench:{re.escape(name)}:end -->\n?",
        re.DOTALL,
    )
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
