"""Retry schedules, delay tiers and the Retry-After header.

A schedule is a tuple of delays in seconds: element ``i`` is the delay
**before** attempt ``i + 1``, so element 0 is always 0 (the first attempt is
immediate) and ``len(schedule)`` is the number of attempts in total.
:data:`DEFAULT_SCHEDULE` is the Standard Webhooks recommendation: immediately,
then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h (10 attempts).

Delays are waited in Kafka: there is one topic per distinct delay, a *tier*
(``deliveries.retry.<format_duration(delay)>``, e.g. ``deliveries.retry.5m``),
and a delay agent per tier holds each record until it is due. Every function
here is pure: randomness (jitter) and the clock (``now``) are arguments.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime

from streams.errors import ConfigError

__all__ = [
    "DEFAULT_SCHEDULE",
    "JITTER_CAP",
    "JITTER_FRACTION",
    "MAX_DELAY",
    "MAX_RETRIES",
    "format_duration",
    "next_retry",
    "parse_duration",
    "parse_retry_after",
    "parse_schedule",
    "parse_seconds",
    "tier_for_delay",
    "tiers_for",
]

DEFAULT_SCHEDULE: tuple[float, ...] = (
    0.0,
    5.0,
    300.0,
    1800.0,
    7200.0,
    18000.0,
    36000.0,
    50400.0,
    72000.0,
    86400.0,
)

#: The most retries (delays after the first attempt) a schedule may list.
MAX_RETRIES = 50
#: The longest single retry delay: 7 days.
MAX_DELAY = 7 * 86400.0
#: Jitter adds up to this fraction of the delay...
JITTER_FRACTION = 0.10
#: ...and never more than this many seconds.
JITTER_CAP = 300.0

_UNITS: tuple[tuple[str, int], ...] = (
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)
_DURATION = re.compile(
    r"(?:(?P<d>\d{1,9})d)?(?:(?P<h>\d{1,9})h)?(?:(?P<m>\d{1,9})m(?!s))?"
    r"(?:(?P<s>\d{1,9})s)?(?:(?P<ms>\d{1,9})ms)?"
)
_DURATION_FORMS = (
    "use a whole number followed by a unit, ms, s, m, h or d (500ms, 5s, 5m, 2h, 1d), "
    "or units from largest to smallest combined (1h30m)"
)


# --- durations ----------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in ``"500ms"``, ``"5s"``, ``"5m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``.

    Units are lowercase and each appears at most once, largest first;
    surrounding whitespace is ignored. A bare number has no unit and is
    refused. Raises :class:`ConfigError` with the bad text and the accepted forms.
    """
    stripped = text.strip()
    match = _DURATION.fullmatch(stripped)
    if not stripped or match is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ConfigError(f"{shown!r} is not a duration; {_DURATION_FORMS}")
    millis = sum(int(match[unit]) * size for unit, size in _UNITS if match[unit] is not None)
    return millis / 1000


_BARE_SECONDS = re.compile(r"\d{1,9}(?:\.\d{1,3})?")


def parse_seconds(value: str | float) -> float:
    """A duration as a command option or an API field takes it: what
    :func:`parse_duration` reads, or a bare number of seconds (``"10"``, ``10``, ``2.5``).

    One rule for every option and field (``--grace 10`` was refused while
    ``--timeout 10`` was accepted). Settings still need their unit: a bare
    ``STREAMS_RETENTION=7`` is more likely 7 days than 7 seconds.
    Raises :class:`ConfigError` naming the value and the accepted forms.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{value!r} is not a duration; {_DURATION_FORMS}, or seconds (10)")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{value!r} is not a duration: a number of seconds of 0 or more")
        return float(value)
    if _BARE_SECONDS.fullmatch(value.strip()):
        return float(value.strip())
    try:
        return parse_duration(value)
    except ConfigError:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ConfigError(
            f"{shown!r} is not a duration; {_DURATION_FORMS}, or a number of seconds (10)"
        ) from None


def format_duration(seconds: float) -> str:
    """The canonical text of a duration: ``"5s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1h30m"``.

    Greedy from days down to milliseconds, zero units left out (``0`` is
    ``"0s"``); rounded to the millisecond. The result parses back with
    :func:`parse_duration` and only uses characters valid in a Kafka topic name.
    Raises :class:`ValueError` for a negative or non-finite duration.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds >= 0, not {seconds!r}")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNITS:
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# --- schedules ----------------------------------------------------------------------------


def parse_schedule(text: str, *, bare_seconds: bool = False) -> tuple[float, ...]:
    """Parse ``STREAMS_RETRY_SCHEDULE``: the delays of the retries, separated by commas.

    The first attempt is always immediate, so ``"5s,5m"`` means three
    attempts and returns ``(0.0, 5.0, 300.0)``; ``"none"`` (any case) is a
    single attempt, ``(0.0,)``. Rules: every delay is a duration above zero
    and at most 7 days; delays never decrease, though equal neighbours are
    fine (``"1h,1h,1h"`` retries hourly); at most :data:`MAX_RETRIES` entries;
    no empty entries. Raises :class:`ConfigError` naming the bad entry.
    ``bare_seconds``: entries may also be numbers of seconds (:func:`parse_seconds`),
    as in a subscription's schedule; the setting keeps requiring units.
    """
    stripped = text.strip()
    if stripped.lower() == "none":
        return (0.0,)
    if not stripped:
        raise ConfigError(
            "the retry schedule is empty; list the delays before each retry, e.g. "
            "5s,5m,30m,2h, or write none for a single attempt"
        )
    entries = stripped.split(",")
    if len(entries) > MAX_RETRIES:
        raise ConfigError(
            f"the retry schedule lists {len(entries)} retries; at most {MAX_RETRIES} are allowed"
        )
    delays: list[float] = [0.0]
    for position, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry:
            raise ConfigError(
                f"retry {position} of the schedule is empty; separate delays with single commas"
            )
        delay = parse_seconds(entry) if bare_seconds else parse_duration(entry)
        if delay <= 0:
            raise ConfigError(
                f"retry {position} ({entry}) has no delay; every retry waits more than 0s "
                "(the first attempt is already immediate)"
            )
        if delay > MAX_DELAY:
            raise ConfigError(f"retry {position} ({entry}) waits longer than the 7d maximum")
        if delay < delays[-1]:
            raise ConfigError(
                f"retry {position} ({entry}) is shorter than the retry before it "
                f"({format_duration(delays[-1])}); delays may stay equal but never decrease"
            )
        delays.append(delay)
    return tuple(delays)


def next_retry(schedule: Sequence[float], attempts_made: int, *, jitter: float) -> float | None:
    """The delay before the next attempt once ``attempts_made`` attempts failed.

    ``None`` when the schedule is exhausted (``attempts_made >= len(schedule)``).
    ``jitter`` is a random number in ``[0, 1)`` drawn by the caller; it adds
    ``delay * 10% * jitter``, at most 5 minutes, so a retry is never earlier
    than scheduled and receivers recovering from an outage are not hit by
    every delivery in the same second.
    """
    if attempts_made < 0:
        raise ValueError(f"attempts_made must be >= 0, not {attempts_made}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), not {jitter!r}")
    if attempts_made >= len(schedule):
        return None
    delay = float(schedule[attempts_made])
    return delay + min(delay * JITTER_FRACTION * jitter, JITTER_CAP)


#: The longest a delivery deferred by a full lane waits before it is offered again.
DEFER_MAX_S = 60.0


def deferral_delay(first_tier: float, deferrals: int, *, jitter: float) -> float:
    """How long a delivery waits after its ``deferrals``-th deferral in a row (no attempt).

    A lane is full when its endpoint answers slower than its traffic arrives.
    Offering the overflow again after the first tier each time would circulate
    it through Kafka once per tier delay for as long as the endpoint stays
    slow, so the wait doubles per deferral: ``first_tier * 2**(deferrals-1)``,
    at most :data:`DEFER_MAX_S` (but at least ``first_tier``). ``jitter`` in
    ``[0, 1)`` takes up to a quarter off, so a backlog deferred together does
    not come back in the same instant and fill the lane again. Off, not on: a
    shorter wait fits the tier :func:`tier_for_delay` picks for it without a
    hop, and a deferral is not an attempt, so no schedule is shortened.
    """
    if deferrals < 1:
        raise ValueError(f"deferrals must be >= 1, not {deferrals}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), not {jitter!r}")
    base = max(first_tier, min(first_tier * 2.0 ** min(deferrals - 1, 30), DEFER_MAX_S))
    return base * (1.0 - 0.25 * jitter)


# --- tiers --------------------------------------------------------------------------------


def tiers_for(schedules: Iterable[Sequence[float]]) -> tuple[float, ...]:
    """The sorted distinct non-zero delays of ``schedules``: one Kafka topic per tier."""
    return tuple(sorted({float(d) for schedule in schedules for d in schedule if d > 0}))


def tier_for_delay(tiers: Sequence[float], delay: float) -> float:
    """The tier a record waiting ``delay`` seconds goes to.

    The smallest tier ``>= delay``; the largest tier when ``delay`` exceeds
    them all. ``tiers`` is sorted ascending (as :func:`tiers_for` returns it).

    A tier never releases a record before its own due time (carried by the
    record). When that due time lies beyond the tier's delay (a delay over
    the largest tier, such as a long Retry-After), the delay agent re-enqueues
    the record for the remainder instead of sending it: this *hop* repeats
    until the record is due, so nothing is ever sent early. Look tiers up
    with the scheduled delay, not the jittered one: the jitter is at most 10%
    and would otherwise push a record into the next, much longer, tier.
    """
    if not tiers:
        raise ValueError("there are no retry tiers (every schedule is a single attempt)")
    index = bisect.bisect_left(tiers, delay)
    return float(tiers[min(index, len(tiers) - 1)])


# --- Retry-After --------------------------------------------------------------------------


def parse_retry_after(
    value: str | None, now: float, *, minimum: float, maximum: float
) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header (RFC 9110 §10.2.3).

    ``value`` is delay-seconds (``"120"``: ASCII digits only) or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``; the obsolete RFC 850 and asctime
    forms are accepted too, and a date without a zone is UTC), compared with
    ``now`` (unix seconds). The result is clamped to ``[minimum, maximum]``:
    a date in the past gives ``minimum``. A missing or unparseable value
    gives ``None``: the schedule applies.
    """
    if minimum > maximum:
        raise ValueError(f"minimum ({minimum}) is above maximum ({maximum})")
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        # Past 15 digits it is beyond any maximum (and int() refuses very long strings).
        seconds = float(int(text)) if len(text) <= 15 else math.inf
    else:
        try:
            when = parsedate_to_datetime(text)
        except (ValueError, TypeError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return min(max(seconds, minimum), maximum)
