"""``streams monitor``: is the pipeline flowing, where is it stuck, which endpoints fail.

A terminal view refreshed every ``--interval`` seconds (``top``-like; Ctrl-C
quits), or one snapshot with ``--once`` (``--json`` for scripts). It works
against whatever cluster the configuration points at:

- **Kafka, directly** (confluent-kafka, :mod:`streams.kafka.offsets`): rates from the
  growth of end offsets between two samples (events in, deliveries fanned out,
  attempts out), the workers' lag on every stage they read (events, ops,
  deliveries, each retry tier), the dead-letter topic's depth and the number
  of invalid events retained (lag against the commits of Faust's group,
  ``STREAMS_APP_ID``, and of the retry tiers' group; see :mod:`streams.kafka.offsets`).
  Needs nothing but ``STREAMS_KAFKA_BOOTSTRAP``,
  ``STREAMS_TOPIC_PREFIX``, ``STREAMS_APP_ID`` and ``STREAMS_RETRY_SCHEDULE``.
- **The management API**, when it answers (``STREAMS_API_URL``, a token as for
  ``streams subscriptions``): success rate and p99 of the last 5 minutes and
  the endpoints failing most with their last error (``GET /v1/stats``). When
  it does not answer, the view says why and shows the Kafka part alone.

"Deliveries out/s" counts attempts (webhook requests made, whatever their
answer): the growth of the ``attempts`` topic.

:func:`render` is pure: a snapshot and a terminal size in, lines out, never
wider or taller than the terminal (at least 80x24 is assumed for a full view).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import IO, Any

from streams.config import Settings
from streams.kafka.offsets import (
    OffsetReader,
    PartitionOffsets,
    consumer_groups,
    rate,
    stages,
    sum_by_topic,
)
from streams.kafka.topics import TopicNames

#: Seconds the monitor waits for the API before showing the Kafka part alone.
API_TIMEOUT_S = 1.5
#: Rows of failing endpoints asked from the API.
FAILING_ROWS = 10


@dataclass
class StageRow:
    name: str
    topic: str
    kind: str
    lag: int | None = None
    end_offset: int | None = None
    rate_per_s: float | None = None


@dataclass
class Snapshot:
    at: float
    bootstrap: str
    group: str
    prefix: str
    kafka_error: str | None = None
    events_in_per_s: float | None = None
    deliveries_out_per_s: float | None = None
    fanout_per_s: float | None = None
    dlq_depth: int | None = None
    dlq_per_s: float | None = None
    invalid_events: int | None = None
    stages: list[StageRow] = field(default_factory=list)
    api: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def api_view(stats: dict[str, Any]) -> dict[str, Any]:
    """The part of ``GET /v1/stats`` the monitor shows."""
    recent = (stats.get("windows") or {}).get("5m") or {}
    return {
        "reachable": True,
        "error": None,
        "tenant_id": stats.get("tenant_id"),
        "attempts_5m": recent.get("attempts"),
        "success_rate_5m": recent.get("success_rate"),
        "p50_ms_5m": (recent.get("latency_ms") or {}).get("p50"),
        "p99_ms_5m": (recent.get("latency_ms") or {}).get("p99"),
        "failing_window": stats.get("failing_window"),
        "failing": [
            {
                "subscription_id": row.get("subscription_id"),
                "tenant_id": row.get("tenant_id"),
                "url": row.get("url"),
                "state": row.get("state"),
                "attempts": row.get("attempts"),
                "failures": row.get("failures"),
                "success_rate": row.get("success_rate"),
                "consecutive_failures": row.get("consecutive_failures"),
                "last_error": (row.get("last_error") or {}).get("error"),
                "last_error_at": (row.get("last_error") or {}).get("at"),
            }
            for row in stats.get("failing") or []
        ],
    }


class Monitor:
    """Samples Kafka (and the API) and keeps the previous sample for rates."""

    def __init__(
        self,
        settings: Settings,
        *,
        use_api: bool = True,
        reader: Any = None,
        fetch_stats: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self.stages = stages(settings)
        self.reader = reader
        self.clock = clock
        self.use_api = use_api
        self._fetch_stats = fetch_stats
        self._client: Any = None
        self._previous: tuple[float, dict[str, int]] | None = None

    # -- the sources ---------------------------------------------------------------

    def _offsets(self) -> list[PartitionOffsets]:
        if self.reader is None:
            self.reader = OffsetReader(self.settings, timeout_s=5.0)
        topics = [s.topic for s in self.stages] + [
            self.names.attempts,
            self.names.dlq,
            self.names.events_invalid,
        ]
        result: list[PartitionOffsets] = self.reader.read(topics, consumer_groups(self.settings))
        return result

    def _stats(self) -> dict[str, Any]:
        if self._fetch_stats is not None:
            return self._fetch_stats()
        if self._client is None:
            from streams.cli.client import ApiClient

            self._client = ApiClient.from_settings(self.settings, timeout=API_TIMEOUT_S)
        result: dict[str, Any] = self._client.stats(limit=FAILING_ROWS)
        return result

    def _api(self) -> dict[str, Any]:
        if not self.use_api:
            return {"reachable": False, "error": "not asked (--no-api)", "failing": []}
        from streams.errors import StreamsError

        try:
            return api_view(self._stats())
        except StreamsError as exc:
            return {"reachable": False, "error": str(exc), "failing": []}

    # -- one sample ----------------------------------------------------------------

    def sample(self) -> Snapshot:
        snap = Snapshot(
            at=time.time(),
            bootstrap=self.settings.kafka_bootstrap,
            group=self.settings.app_id,
            prefix=self.settings.topic_prefix,
        )
        now = self.clock()
        try:
            offsets = self._offsets()
        except Exception as exc:  # KafkaException: unreachable, timed out
            snap.kafka_error = f"Kafka at {self.settings.kafka_bootstrap}: {exc}"
            snap.stages = [StageRow(s.name, s.topic, s.kind) for s in self.stages]
        else:
            self._fill(snap, offsets, now)
        snap.api = self._api()
        return snap

    def _fill(self, snap: Snapshot, offsets: list[PartitionOffsets], now: float) -> None:
        by_topic = sum_by_topic(offsets)
        highs = {topic: row["high"] for topic, row in by_topic.items()}
        before: dict[str, int] = {}
        seconds = 0.0
        if self._previous is not None:
            seconds = now - self._previous[0]
            before = self._previous[1]
        self._previous = (now, highs)

        def speed(topic: str) -> float | None:
            return rate(before.get(topic), highs.get(topic), seconds)

        for s in self.stages:
            row = by_topic.get(s.topic)
            snap.stages.append(
                StageRow(
                    s.name,
                    s.topic,
                    s.kind,
                    lag=row["lag"] if row else None,
                    end_offset=row["high"] if row else None,
                    rate_per_s=speed(s.topic),
                )
            )
        names = self.names
        snap.events_in_per_s = speed(names.events)
        snap.fanout_per_s = speed(names.deliveries)
        snap.deliveries_out_per_s = speed(names.attempts)
        dlq = by_topic.get(names.dlq)
        snap.dlq_depth = dlq["messages"] if dlq else None
        snap.dlq_per_s = speed(names.dlq)
        invalid = by_topic.get(names.events_invalid)
        snap.invalid_events = invalid["messages"] if invalid else None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.reader is not None:
            self.reader.close()


# -- rendering -------------------------------------------------------------------------


def human(n: float | None, *, digits: int = 1) -> str:
    """A short number: ``-`` for unknown, ``950``, ``12.3k``, ``4.5M``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    size = abs(n)
    for threshold, unit, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if size >= threshold:
            return f"{n / unit:.{digits}f}{suffix}"
    if isinstance(n, int):
        return str(n)
    return f"{n:.{digits}f}"


def percent(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} ms"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "~"


def render(snap: Snapshot, *, width: int = 80, height: int = 24) -> list[str]:
    """The view of one snapshot: at most ``height`` lines of at most ``width`` characters."""
    width = max(20, width)
    clock = datetime.fromtimestamp(snap.at).strftime("%H:%M:%S")
    where = f"kafka {snap.bootstrap}  group {snap.group}"
    if snap.prefix:
        where += f"  prefix {snap.prefix}"
    title = f"streams monitor  {where}"
    lines = [_fit(title, width - len(clock) - 1).ljust(width - len(clock)) + clock]

    api = snap.api or {}
    if snap.kafka_error:
        lines.append(_fit(f"! {snap.kafka_error}", width))
    lines.append(
        f"events in/s {human(snap.events_in_per_s):>9}   "
        f"deliveries out/s {human(snap.deliveries_out_per_s):>8}   "
        f"fan-out/s {human(snap.fanout_per_s):>8}"
    )
    dlq = human(snap.dlq_depth, digits=1)
    if snap.dlq_per_s:
        dlq += f" (+{human(snap.dlq_per_s)}/s)"
    lines.append(
        f"success 5m  {percent(api.get('success_rate_5m')):>8}   "
        f"p99 5m {_ms(api.get('p99_ms_5m')):>18}   "
        f"DLQ depth {dlq:>8}"
    )
    if api.get("reachable"):
        scope = f"tenant {api['tenant_id']}" if api.get("tenant_id") else "all tenants"
        attempts = human(api.get("attempts_5m"))
        status = f"API ok ({scope}, {attempts} attempts in 5m)"
    else:
        status = f"API unavailable: {api.get('error') or 'unknown'}"
    lines.append(f"invalid events {human(snap.invalid_events):>6}")
    lines.append(_fit(status, width))
    lines.append("")

    # Stages in two columns: events, ops, deliveries, then every retry tier.
    col = (width - 3) // 2
    head = _stage_cell("stage", "lag", "rate/s", col)
    rows = [_stage_cell(s.name, human(s.lag), human(s.rate_per_s), col) for s in snap.stages]
    half = math.ceil(len(rows) / 2)
    left, right = rows[:half], rows[half:]
    lines.append(f"{head} | {head}" if right else head)
    for i, cell in enumerate(left):
        lines.append(f"{cell} | {right[i]}" if i < len(right) else cell)

    room = height - len(lines) - 2
    failing = api.get("failing") or []
    if room >= 1 and api.get("reachable"):
        lines.append("")
        window = api.get("failing_window") or "1h"
        lines.append(
            _fit(
                f"failing endpoints ({window})".ljust(36) + "fails   ok%  consec  last error", width
            )
        )
        if not failing:
            lines.append("  none")
        shown = failing[:room]
        urls = Counter(row.get("url") for row in shown)
        for row in shown:
            ident = _ident(row, shared_url=urls[row.get("url")] > 1)
            consec = row.get("consecutive_failures")
            text = (
                f"{ident:<35} {human(row.get('failures')):>5} "
                f"{percent(row.get('success_rate')):>6} {human(consec):>6}  "
                f"{row.get('last_error') or ''}"
            )
            lines.append(_fit(text, width))
    return [_fit(line, width).rstrip() for line in lines[:height]]


def _ident(row: dict[str, Any], *, shared_url: bool, width: int = 35) -> str:
    """An endpoint's name in the failing list: its URL, and when another row shows the
    same URL (two subscriptions to one endpoint), the start of its subscription id,
    kept whole however the URL is cut."""
    sub_id = str(row.get("subscription_id") or "?")
    url = row.get("url")
    if not url:
        return _fit(sub_id, width)
    if not shared_url:
        return _fit(_short_url(str(url)), width)
    tag = " " + sub_id[:12]
    return _fit(_short_url(str(url)), width - len(tag)) + tag


def _short_url(url: str) -> str:
    """``host/path`` of a URL: the scheme adds nothing on one line."""
    for scheme in ("https://", "http://"):
        if url.startswith(scheme):
            return url[len(scheme) :]
    return url


def _stage_cell(name: str, lag: str, speed: str, width: int) -> str:
    cell = f"{_fit(name, 14):<14} {lag:>10} {speed:>10}"
    return _fit(cell, width).ljust(width)


# -- the command --------------------------------------------------------------------


def run(
    settings: Settings,
    *,
    once: bool,
    as_json: bool,
    interval: float,
    count: int,
    use_api: bool,
    out: IO[str] | None = None,
) -> int:
    """Run the view (or print one snapshot); the exit status (1 when Kafka did not answer)."""
    import orjson

    out = out or sys.stdout
    monitor = Monitor(settings, use_api=use_api)
    try:
        if once:
            monitor.sample()  # the first sample only primes the rates
            time.sleep(interval)
            snap = monitor.sample()
            if as_json:
                out.write(orjson.dumps(snap.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                out.write("\n".join(render(snap)) + "\n")
                if snap.kafka_error:  # the view cuts lines to 80 columns: the whole of it here
                    print(f"error: {snap.kafka_error}", file=sys.stderr)
            return 1 if snap.kafka_error else 0
        return _loop(monitor, out, as_json=as_json, interval=interval, count=count)
    finally:
        monitor.close()


def _loop(monitor: Monitor, out: IO[str], *, as_json: bool, interval: float, count: int) -> int:
    import orjson

    tty = out.isatty() and not as_json
    if tty:
        out.write("\x1b[?1049h\x1b[?25l")  # the alternate screen, no cursor (like top)
    frames = 0
    try:
        while count == 0 or frames < count:
            started = time.monotonic()
            snap = monitor.sample()
            frames += 1
            if as_json:
                out.write(orjson.dumps(snap.as_dict()).decode() + "\n")
            else:
                size = shutil.get_terminal_size((80, 24))
                lines = render(snap, width=size.columns, height=size.lines)
                if tty:
                    out.write("\x1b[H" + "\n".join(line + "\x1b[K" for line in lines) + "\x1b[J")
                else:
                    out.write("\n".join(lines) + "\n\n")
            out.flush()
            if count and frames >= count:
                break
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    finally:
        if tty:
            out.write("\x1b[?25h\x1b[?1049l")
            out.flush()
    return 0
