"""Retry schedules, tiers, durations and Retry-After."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from streams.errors import ConfigError
from streams.retry.schedule import (
    DEFAULT_SCHEDULE,
    deferral_delay,
    format_duration,
    next_retry,
    parse_duration,
    parse_retry_after,
    parse_schedule,
    tier_for_delay,
    tiers_for,
)

# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1d12h", 129600.0),
        ("1m30s", 90.0),
        ("1s250ms", 1.25),
        ("1d2h3m4s5ms", 93784.005),
        ("0s", 0.0),
        (" 10s ", 10.0),
    ],
)
def test_parse_duration_reads_whole_numbers_with_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "5", "5 s", "5S", "1.5h", "-5s", "5sec", "30m1h", "1h1h", "5x", "ms", "1m30"]
)
def test_parse_duration_refuses_other_text_naming_it_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f"{text!r} is not a duration; use a whole number followed by a unit, ms, s, m, h or d "
        "(500ms, 5s, 5m, 2h, 1d), or units from largest to smallest combined (1h30m)"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (5, "5s"),
        (300, "5m"),
        (1800, "30m"),
        (7200, "2h"),
        (5400, "1h30m"),
        (86400, "1d"),
        (90000, "1d1h"),
        (1.25, "1s250ms"),
        (0.0004, "0s"),
    ],
)
def test_format_duration_writes_the_canonical_form_used_in_topic_names(
    seconds: float, text: str
) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.5, 5, 300, 5400, 86400, 93784.005])
def test_a_formatted_duration_parses_back_to_the_same_seconds(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_format_duration_refuses_negative_and_non_finite_durations(seconds: float) -> None:
    with pytest.raises(ValueError, match="a duration must be a finite number of seconds >= 0"):
        format_duration(seconds)


# --- schedules ----------------------------------------------------------------------------


def test_the_default_schedule_is_the_standard_webhooks_recommendation() -> None:
    assert DEFAULT_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert parse_schedule("5s,5m,30m,2h,5h,10h,14h,20h,24h") == DEFAULT_SCHEDULE


@pytest.mark.parametrize(
    ("text", "schedule"),
    [
        ("5s,5m", (0.0, 5.0, 300.0)),
        (" 5s , 5m ,30m", (0.0, 5.0, 300.0, 1800.0)),
        ("1h,1h,1h", (0.0, 3600.0, 3600.0, 3600.0)),
        ("500ms", (0.0, 0.5)),
        ("7d", (0.0, 604800.0)),
        ("none", (0.0,)),
        ("NONE", (0.0,)),
        (" None ", (0.0,)),
        (",".join(["1s"] * 50), (0.0,) + (1.0,) * 50),
    ],
)
def test_parse_schedule_returns_every_delay_with_the_immediate_first_attempt(
    text: str, schedule: tuple[float, ...]
) -> None:
    assert parse_schedule(text) == schedule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the retry schedule is empty"),
        ("5s,,5m", "retry 2 of the schedule is empty"),
        ("5s,5m,", "retry 3 of the schedule is empty"),
        ("0s,5m", "retry 1 (0s) has no delay"),
        ("-5s", "'-5s' is not a duration"),
        ("5m,5s", "retry 2 (5s) is shorter than the retry before it (5m)"),
        ("5s,8d", "retry 2 (8d) waits longer than the 7d maximum"),
        (",".join(["1s"] * 51), "the retry schedule lists 51 retries; at most 50 are allowed"),
        ("5s,soon", "'soon' is not a duration"),
    ],
)
def test_parse_schedule_refuses_bad_schedules_naming_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_schedule(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("attempts_made", "delay"),
    [(0, 0.0), (1, 5.0), (2, 300.0), (3, 1800.0), (9, 86400.0), (10, None), (11, None)],
)
def test_next_retry_without_jitter_follows_the_schedule_until_exhausted(
    attempts_made: int, delay: float | None
) -> None:
    assert next_retry(DEFAULT_SCHEDULE, attempts_made, jitter=0.0) == delay


@pytest.mark.parametrize(
    ("attempts_made", "jitter", "delay"),
    [
        (1, 0.5, 5.25),  # +10% x 0.5 of 5s
        (2, 0.999, 300 + 29.97),  # just under +10%
        (4, 0.5, 7200 + 300),  # +360s would exceed the 5 minute cap
        (9, 0.25, 86400 + 300),  # +2160s capped at 5 minutes
        (3, 0.1, 1818.0),  # +18s
    ],
)
def test_jitter_adds_up_to_ten_percent_capped_at_five_minutes(
    attempts_made: int, jitter: float, delay: float
) -> None:
    assert next_retry(DEFAULT_SCHEDULE, attempts_made, jitter=jitter) == pytest.approx(delay)


def test_a_single_attempt_schedule_has_no_retry() -> None:
    assert next_retry(parse_schedule("none"), 1, jitter=0.5) is None


@pytest.mark.parametrize(
    ("attempts_made", "jitter", "message"),
    [
        (-1, 0.0, "attempts_made must be >= 0"),
        (1, 1.0, "jitter must be in [0, 1)"),
        (1, -0.1, "jitter must be in [0, 1)"),
    ],
)
def test_next_retry_refuses_impossible_arguments(
    attempts_made: int, jitter: float, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        next_retry(DEFAULT_SCHEDULE, attempts_made, jitter=jitter)


# --- tiers --------------------------------------------------------------------------------


def test_tiers_are_the_sorted_distinct_non_zero_delays_of_all_schedules() -> None:
    schedules = [DEFAULT_SCHEDULE, (0.0, 60.0, 300.0), (0.0,), (0.0, 5.0, 5.0)]
    assert tiers_for(schedules) == (
        5.0,
        60.0,
        300.0,
        1800.0,
        7200.0,
        18000.0,
        36000.0,
        50400.0,
        72000.0,
        86400.0,
    )
    assert tiers_for([(0.0,)]) == ()


@pytest.mark.parametrize(
    ("delay", "tier"),
    [
        (0.0, 5.0),
        (1.0, 5.0),
        (5.0, 5.0),
        (5.5, 300.0),
        (300.0, 300.0),
        (1800.0, 1800.0),
        (1801.0, 7200.0),
        (86400.0, 86400.0),
        (172800.0, 86400.0),  # beyond the largest tier: hop through it
    ],
)
def test_a_delay_goes_to_the_smallest_tier_at_least_as_long_or_else_the_largest(
    delay: float, tier: float
) -> None:
    assert tier_for_delay(tiers_for([DEFAULT_SCHEDULE]), delay) == tier


def test_there_is_no_tier_when_no_schedule_retries() -> None:
    with pytest.raises(ValueError, match="there are no retry tiers"):
        tier_for_delay((), 5.0)


# --- Retry-After --------------------------------------------------------------------------

NOW = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """Run in a local time zone far from UTC, so naive dates read as local would show."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TZ", "JST-9")  # POSIX form: needs no tz database
    time.tzset()
    yield
    mp.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 120 ", 120.0),
        ("0", 1.0),  # below the minimum
        ("999999", 3600.0),  # above the maximum
        ("9" * 400, 3600.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:30:00 GMT", 120.0),  # obsolete RFC 850
        ("Wed Oct 21 07:30:00 2015", 120.0),  # obsolete asctime, UTC
        ("Wed, 21 Oct 2015 07:00:00 GMT", 1.0),  # in the past
        ("Thu, 22 Oct 2015 07:28:00 GMT", 3600.0),  # a day ahead, clamped
        ("Wed, 21 Oct 2015 09:30:00 +0200", 120.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("120s", None),
        ("Wed, 32 Oct 2015 07:30:00 GMT", None),
        ("١٢٠", None),  # Arabic-Indic digits are not delta-seconds
    ],
)
def test_retry_after_is_delta_seconds_or_an_http_date_clamped_to_the_bounds(
    value: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(value, NOW, minimum=1.0, maximum=3600.0) == seconds


def test_retry_after_refuses_a_minimum_above_the_maximum() -> None:
    with pytest.raises(ValueError, match=r"minimum \(10\.0\) is above maximum \(5\.0\)"):
        parse_retry_after("1", NOW, minimum=10.0, maximum=5.0)


# --- deferrals (a full lane) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_tier", "deferrals", "jitter", "delay"),
    [
        (1.0, 1, 0.0, 1.0),
        (1.0, 2, 0.0, 2.0),
        (1.0, 3, 0.0, 4.0),
        (1.0, 6, 0.0, 32.0),
        (1.0, 7, 0.0, 60.0),  # capped
        (1.0, 500, 0.0, 60.0),  # no overflow however many
        (5.0, 1, 0.0, 5.0),
        (5.0, 4, 0.0, 40.0),
        (120.0, 3, 0.0, 120.0),  # never below the first tier, even over the cap
        (1.0, 3, 0.5, 3.5),  # jitter takes up to a quarter off
        (1.0, 7, 0.999, 60.0 * (1 - 0.25 * 0.999)),
    ],
)
def test_deferral_delay_doubles_per_deferral_up_to_a_minute(
    first_tier: float, deferrals: int, jitter: float, delay: float
) -> None:
    assert deferral_delay(first_tier, deferrals, jitter=jitter) == pytest.approx(delay)


@pytest.mark.parametrize(("deferrals", "jitter"), [(0, 0.0), (-1, 0.0), (1, 1.0), (1, -0.1)])
def test_deferral_delay_rejects_bad_arguments(deferrals: int, jitter: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        deferral_delay(1.0, deferrals, jitter=jitter)


def test_a_jittered_deferral_fits_the_tier_of_its_unjittered_wait() -> None:
    tiers = (1.0, 2.0, 4.0, 8.0)
    for deferrals in range(1, 8):
        base = deferral_delay(1.0, deferrals, jitter=0.0)
        for jitter in (0.0, 0.3, 0.999):
            delay = deferral_delay(1.0, deferrals, jitter=jitter)
            assert tier_for_delay(tiers, delay) <= tier_for_delay(tiers, base)
