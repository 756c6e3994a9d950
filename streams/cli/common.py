"""What every command module of the CLI shares: settings, JSON output, clean errors,
and the helpers of the commands that call the management API.

Here so that the command modules import it and nothing imports them back: the
old ``cli.py`` and ``cli_api.py`` imported each other.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from streams.config import Settings
from streams.errors import StreamsError

if TYPE_CHECKING:
    from streams.cli.client import ApiClient

F = TypeVar("F", bound=Callable[..., Any])


def settings_from_env() -> Settings:
    return Settings.from_env()


def print_json(obj: Any) -> None:
    # Keys that are not strings (partition numbers) are written as JSON strings.
    option = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    sys.stdout.write(orjson.dumps(obj, option=option, default=str).decode() + "\n")


def fail_cleanly(fn: F) -> F:
    """Turn package errors into one line on stderr and exit status 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StreamsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


ONCE = "store it now: it will not be shown again"


class Duration(click.ParamType):
    """A duration option: ``500ms``, ``10s``, ``5m``, ``1h30m``, or a bare number of seconds.

    One type for every duration option of the CLI (``--grace 10`` was refused while
    ``--timeout 10`` was accepted). The value is seconds, a float; with ``as_text``, a
    duration with units stays the text as written (checked here, sent to the API, which
    reads the same forms) and a bare number is seconds.
    """

    name = "DURATION"

    def __init__(self, low: float = 0.0, high: float | None = None, *, as_text: bool = False):
        self.low = low
        self.high = high
        self.as_text = as_text

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from streams.errors import ConfigError
        from streams.retry.schedule import format_duration, parse_seconds

        try:
            seconds = parse_seconds(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)
        if seconds < self.low or (self.high is not None and seconds > self.high):
            top = "" if self.high is None else f" and at most {format_duration(self.high)}"
            self.fail(
                f"{value!r} is out of range: at least {format_duration(self.low)}{top}", param, ctx
            )
        if self.as_text and not _is_number(value):
            return str(value).strip()
        return seconds


@contextmanager
def _client() -> Iterator[ApiClient]:
    from streams.cli.client import ApiClient  # httpx: only when a command calls the API

    with ApiClient.from_settings(settings_from_env()) as client:
        yield client


def _json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")(fn)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x09}


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``): values stored before the
    API refused them must not drive the operator's terminal."""
    return text.translate(_CONTROLS)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in (headers, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())


def _print_once(label: str, value: str) -> None:
    click.echo("")
    click.echo(f"{label}: {value}")
    click.echo(f"  ({ONCE})")


def _iso(ts: Any) -> str:
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        moment = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
        return moment.replace("+00:00", "Z")
    return "" if ts is None else str(ts)
