"""``streams bench SCENARIO [options]``: run one scenario and publish its results."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from streams.errors import StreamsError

ROOT = Path(__file__).resolve().parents[3]


def _scenario_help() -> str:
    from streams.tools.bench.config import SCENARIOS

    return "\n".join(f"  {name:<19} {sc.summary}" for name, sc in SCENARIOS.items())


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop children


@click.command(
    "bench",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument("scenario", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option("--smoke", is_flag=True, help="A small size that finishes in seconds (CI).")
@click.option("--workers", type=int, default=None, help="Worker processes.")
@click.option("--receivers", type=int, default=None, help="Receiver processes (SO_REUSEPORT).")
@click.option("--events", type=int, default=None, help="Events to publish.")
@click.option("--fanout", type=int, default=None, help="Subscriptions each event matches.")
@click.option("--tenants", type=int, default=None, help="Tenants the events are spread over.")
@click.option(
    "--subscriptions", type=int, default=None, help="Subscriptions (slow, noisy, fanout)."
)
@click.option("--rate", default=None, help="Deliveries/s; latency takes a list (e.g. 500,1000).")
@click.option("--duration", type=float, default=None, help="Seconds per rate (latency, soak).")
@click.option(
    "--rows", default=None, help="paced: RATExFANOUT rows, e.g. 1000x10,500x1 (deliveries/s)."
)
@click.option("--idle", type=float, default=None, help="paced: seconds of idle cost measured.")
@click.option(
    "--warm",
    type=float,
    default=None,
    help="paced: seconds of each row's load run first, not measured (JIT, caches).",
)
@click.option(
    "--private-broker/--shared-broker",
    default=None,
    help="Start a broker of the run's own (its CPU is then this pipeline's alone).",
)
@click.option("--partitions", type=int, default=None, help="Partitions of every topic.")
@click.option("--kills", type=int, default=None, help="Kills (kill-worker, kill-broker).")
@click.option("--retry-schedule", default=None, help="STREAMS_RETRY_SCHEDULE of the workers.")
@click.option(
    "--sub-timeout",
    type=float,
    default=None,
    help="Request timeout (s) of the faulty/dead subscriptions (faults, noisy).",
)
@click.option(
    "--worker-env",
    multiple=True,
    metavar="STREAMS_NAME=VALUE",
    help="An extra setting of every worker (repeatable), e.g. STREAMS_DELIVERY_LOG=off.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of fault timings.")
@click.option("--profile", is_flag=True, help="py-spy worker 0 during the load (needs py-spy).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the JSON results [docs/bench-results; none with --smoke].",
)
@click.option(
    "--doc",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Markdown file whose section to update [docs/benchmarks.md; none with --smoke].",
)
@click.option("--no-doc", is_flag=True, help="Do not touch the Markdown file.")
@click.option("--keep", is_flag=True, help="Keep the run directory and the run's topics.")
@click.option(
    "--wait-quiet",
    type=click.FloatRange(0, 3600),
    default=0,
    help="Wait up to this many seconds for a 1-minute load average below 1 first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench_cmd(
    scenario: str | None,
    list_only: bool,
    smoke: bool,
    workers: int | None,
    receivers: int | None,
    events: int | None,
    fanout: int | None,
    tenants: int | None,
    subscriptions: int | None,
    rate: str | None,
    duration: float | None,
    rows: str | None,
    idle: float | None,
    warm: float | None,
    private_broker: bool | None,
    partitions: int | None,
    kills: int | None,
    retry_schedule: str | None,
    sub_timeout: float | None,
    worker_env: tuple[str, ...],
    seed: int,
    profile: bool,
    out_dir: Path | None,
    doc: Path | None,
    no_doc: bool,
    keep: bool,
    wait_quiet: float,
    as_json: bool,
) -> None:
    """Run one benchmark or fault-injection SCENARIO and publish its results.

    Starts what it needs (a local broker unless STREAMS_KAFKA_BOOTSTRAP answers,
    `streams worker` processes, receiver processes), drives the scenario, checks
    every (event, subscription) pair against the receiver's ledger and the DLQ,
    and writes docs/bench-results/SCENARIO.json and a section of
    docs/benchmarks.md. `streams bench --list` lists the scenarios.
    """
    if list_only or scenario is None:
        click.echo("scenarios (streams bench SCENARIO [--smoke]):")
        click.echo(_scenario_help())
        if scenario is None and not list_only:
            sys.exit(2)
        return
    overrides: dict[str, Any] = {
        "workers": workers,
        "receivers": receivers,
        "events": events,
        "fanout": fanout,
        "tenants": tenants,
        "subscriptions": subscriptions,
        "rate": rate,
        "duration": duration,
        "rows": rows,
        "idle": idle,
        "warm": warm,
        "private_broker": private_broker,
        "partitions": partitions,
        "kills": kills,
        "retry_schedule": retry_schedule,
        "sub_timeout": sub_timeout,
        "worker_env": worker_env or None,
    }
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        results = run(
            scenario,
            smoke=smoke,
            overrides=overrides,
            seed=seed,
            profile=profile,
            out_dir=out_dir
            if out_dir is not None
            else (None if smoke else ROOT / "docs" / "bench-results"),
            doc=None
            if no_doc
            else (doc if doc is not None else (None if smoke else ROOT / "docs" / "benchmarks.md")),
            keep=keep,
            argv=sys.argv[1:],
            wait_quiet_s=wait_quiet,
        )
    except StreamsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        import orjson

        click.echo(orjson.dumps(results, option=orjson.OPT_INDENT_2, default=str).decode())
    else:
        click.echo(summary_text(results))
    if not results.get("ok"):
        sys.exit(1)


def run(
    scenario_name: str,
    *,
    smoke: bool = False,
    overrides: dict[str, Any] | None = None,
    seed: int = 7,
    profile: bool = False,
    out_dir: Path | None = None,
    doc: Path | None = None,
    keep: bool = False,
    argv: list[str] | None = None,
    say: Any = None,
    base_dir: Path | None = None,
    wait_quiet_s: float = 0.0,
) -> dict[str, Any]:
    """Run a scenario; returns its results (also written to ``out_dir`` and ``doc``)."""
    from streams.tools.bench import report
    from streams.tools.bench.config import resolve, scenario
    from streams.tools.bench.load import Bench
    from streams.tools.bench.procs import check_explicit_broker
    from streams.tools.bench.scenarios import RUNNERS

    sc = scenario(scenario_name)
    params = resolve(scenario_name, smoke=smoke, overrides=overrides)
    check_explicit_broker()  # a configured broker that does not answer fails at once
    say = say or (lambda msg: click.echo(f"[bench {time.strftime('%H:%M:%S')}] {msg}", err=True))
    waited = wait_for_quiet(wait_quiet_s, say) if wait_quiet_s else None
    started = time.time()
    results: dict[str, Any] = {
        "scenario": sc.name,
        "summary": sc.summary,
        "smoke": smoke,
        "started_at": report.now_iso(),
        "command": report.command_line(argv if argv is not None else ["bench", scenario_name]),
        "params": params.as_dict(),
    }
    if waited is not None:
        results["waited_for_quiet_s"] = waited
    with Bench(sc, params, smoke=smoke, say=say, keep=keep, base_dir=base_dir) as bench:
        bench.seed = seed
        bench.profile = profile
        results["machine"] = report.machine_info()
        try:
            outcome = RUNNERS[sc.name](bench)
        except BaseException:
            bench.failed = True
            raise
        if bench.broker is not None:
            results["machine"]["kafka"] = bench.broker.version
        results["run_dir"] = str(bench.dir)
        if not outcome.ok:
            bench.failed = True
    results.update(
        {
            "ok": outcome.ok,
            "finished_at": report.now_iso(),
            "took_s": round(time.time() - started, 1),
            "targets": outcome.targets,
            "metrics": outcome.metrics,
            "tables": outcome.tables,
            "checks": outcome.checks,
            "ceiling": outcome.ceiling,
            "cpu": outcome.cpu,
            "notes": outcome.notes + bench.notes,
            "extra": outcome.extra,
        }
    )
    if out_dir is not None:
        path = report.write_json(results, out_dir)
        say(f"results: {path}")
    if doc is not None:
        report.update_doc(doc, results)
        say(f"updated {doc}")
    return results


def wait_for_quiet(limit_s: float, say: Any, threshold: float = 1.0) -> float:
    """Wait (at most ``limit_s``) until the 1-minute load average is below ``threshold``."""
    import os

    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        load = os.getloadavg()[0]
        if load < threshold:
            break
        say(f"load average {load:.2f}: waiting for a quieter machine")
        time.sleep(min(15.0, max(0.0, limit_s - (time.monotonic() - started))))
    return round(time.monotonic() - started, 1)


def summary_text(results: dict[str, Any]) -> str:
    from streams.tools.bench.report import fmt

    lines = [f"{results['scenario']}: {'ok' if results.get('ok') else 'FAILED'}"]
    for t in results.get("targets") or []:
        met = {True: "met", False: "MISSED", None: "-"}[t.get("met")]
        lines.append(f"  {t['target']}: {t['measured']} [{met}]")
    for k, v in (results.get("metrics") or {}).items():
        lines.append(f"  {k}: {fmt(v)}")
    checks = results.get("checks")
    if checks:
        lines.append(
            f"  pairs: {checks['expected_pairs']} expected, {checks['delivered_pairs']} delivered, "
            f"{checks['parked_pairs']} parked, {checks['lost_pairs']} lost; "
            f"{checks['duplicates']} duplicates; {checks['invalid_signatures']} bad signatures"
        )
    if results.get("ceiling"):
        lines.append(f"  receiver ceiling: {results['ceiling'].get('rps')} req/s")
    if results.get("cpu"):
        lines.append(f"  cpu (cores): {fmt(results['cpu'])}")
    return "\n".join(lines)
