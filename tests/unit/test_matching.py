"""Event-type patterns: validation and matching."""

from __future__ import annotations

import pytest

from streams.fanout.matching import (
    PatternError,
    TypeMatcher,
    is_event_type,
    matches,
    validate_pattern,
)

# (pattern, event type, matches?)
MATCH_TABLE = [
    ("prospect.added", "prospect.added", True),
    ("prospect.added", "prospect.removed", False),
    ("prospect.added", "prospect.added.late", False),
    ("prospect.added", "prospect", False),
    ("*", "prospect.added", True),
    ("*", "ping", True),
    ("*", "crawl.run.completed", True),
    ("prospect.*", "prospect.added", True),
    ("prospect.*", "prospect.a.b", True),
    ("prospect.*", "prospect", False),
    ("prospect.*", "prospects.added", False),
    ("prospect.*", "crawl.prospect.added", False),
    ("*.completed", "run.completed", True),
    ("*.completed", "crawl.run.completed", False),
    ("*.completed", "completed", False),
    ("*.completed", "run.completed.late", False),
    ("crawl.*.completed", "crawl.run.completed", True),
    ("crawl.*.completed", "crawl.a.b.completed", False),
    ("crawl.*.completed", "crawl.completed", False),
    ("crawl.*.completed", "other.run.completed", False),
    ("crawl.*.*", "crawl.run.completed", True),
    ("crawl.*.*", "crawl.run.a.b", True),
    ("crawl.*.*", "crawl.run", False),
    ("*.*", "a.b", True),
    ("*.*", "a.b.c", True),
    ("*.*", "a", False),
    ("*.run.*", "crawl.run.completed", True),
    ("*.run.*", "crawl.walk.completed", False),
    ("Prospect.Added", "prospect.added", True),
]


@pytest.mark.parametrize(("pattern", "event_type", "expected"), MATCH_TABLE)
def test_a_pattern_matches_exactly_the_documented_event_types(
    pattern: str, event_type: str, expected: bool
) -> None:
    assert matches(pattern, event_type) is expected
    assert TypeMatcher([pattern]).matches(event_type) is expected


@pytest.mark.parametrize(
    ("pattern", "normalised"),
    [
        ("prospect.added", "prospect.added"),
        ("  prospect.added\n", "prospect.added"),
        ("Prospect.*", "prospect.*"),
        ("*", "*"),
        ("crawl.*.completed", "crawl.*.completed"),
        ("a_1.b_2", "a_1.b_2"),
        ("a" * 128, "a" * 128),
    ],
)
def test_validate_pattern_returns_the_normalised_pattern(pattern: str, normalised: str) -> None:
    assert validate_pattern(pattern) == normalised


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "the event-type pattern is empty"),
        ("   ", "the event-type pattern is empty"),
        ("prospect.add*", "'prospect.add*' is not a valid event-type pattern"),
        ("**", "'**' is not a valid event-type pattern"),
        ("prospect..added", "'prospect..added' is not a valid event-type pattern"),
        (".prospect", "'.prospect' is not a valid event-type pattern"),
        ("prospect.", "'prospect.' is not a valid event-type pattern"),
        ("prospect-added", "'prospect-added' is not a valid event-type pattern"),
        ("prospect added", "'prospect added' is not a valid event-type pattern"),
        ("prospect.#", "'prospect.#' is not a valid event-type pattern"),
        ("prospéct.added", "'prospéct.added' is not a valid event-type pattern"),
        ("a" * 129, "is too long"),
    ],
)
def test_a_malformed_pattern_is_refused_saying_what_is_allowed(pattern: str, message: str) -> None:
    with pytest.raises(PatternError) as caught:
        validate_pattern(pattern)
    assert message in str(caught.value)
    assert "a whole segment may be *" in str(caught.value)


def test_a_pattern_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a valid event-type pattern"):
        matches("prospect.add*", "prospect.added")


def test_a_matcher_built_from_several_patterns_matches_their_union() -> None:
    matcher = TypeMatcher(["prospect.added", "crawl.*", "*.failed", "a.*.c"])
    assert [
        matcher.matches(t)
        for t in [
            "prospect.added",
            "prospect.removed",
            "crawl.run.completed",
            "crawl",
            "run.failed",
            "crawl.run.failed",
            "a.b.c",
            "a.b.d",
        ]
    ] == [True, False, True, False, True, True, True, False]


def test_a_matcher_without_patterns_matches_nothing() -> None:
    assert TypeMatcher([]).matches("prospect.added") is False


def test_a_matcher_keeps_its_normalised_patterns() -> None:
    matcher = TypeMatcher([" Prospect.*", "prospect.*", "ping"])
    assert matcher.patterns == frozenset({"prospect.*", "ping"})
    assert repr(matcher) == "TypeMatcher(['ping', 'prospect.*'])"


def test_a_matcher_refuses_a_malformed_pattern_when_built() -> None:
    with pytest.raises(PatternError, match=r"'crawl\.\*x' is not a valid event-type pattern"):
        TypeMatcher(["prospect.added", "crawl.*x"])


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("prospect.added", True),
        ("crawl.run.completed", True),
        ("ping", True),
        ("a_b.c_1", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("Prospect.added", False),
        ("prospect.*", False),
        ("prospect.", False),
        ("", False),
    ],
)
def test_is_event_type_accepts_dotted_lowercase_names_of_at_most_128_characters(
    name: str, valid: bool
) -> None:
    assert is_event_type(name) is valid


def test_a_trailing_star_needs_a_non_empty_segment_after_the_prefix() -> None:
    matcher = TypeMatcher(["prospect.*"])
    assert matcher.matches("prospect.") is False
    assert matcher.matches("prospect.a") is True
