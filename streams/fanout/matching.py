"""Event-type matching: which subscriptions want which events.

Event types are dotted lowercase names, ``prospect.added`` or
``crawl.run.completed``: segments of ``a-z``, ``0-9`` and ``_`` joined by
dots, at most 128 characters in all.

A subscription lists patterns. A pattern is a dotted name whose segments are
either literal or ``*``, at most 128 characters:

==========================  ===========================================================
pattern                     matches
==========================  ===========================================================
``prospect.added``          exactly ``prospect.added``
``*``                       every event type
``prospect.*``              ``prospect.added``, ``prospect.a.b``: a trailing ``*`` is
                            one **or more** segments; never ``prospect`` itself
``*.completed``             ``run.completed``, not ``crawl.run.completed`` nor
                            ``completed``: a ``*`` that is not last is exactly one
                            segment
``crawl.*.completed``       ``crawl.run.completed``, not ``crawl.a.b.completed``
``*.*``                     every type of two or more segments
==========================  ===========================================================

``*`` alone is the trailing rule applied to a one-segment pattern, hence
"every type". A ``*`` only ever stands for whole segments: ``prospect.add*``,
``**`` and empty segments are refused with :class:`PatternError`. Patterns are
normalised (surrounding whitespace removed, lowercased) by
:func:`validate_pattern`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

__all__ = [
    "MAX_EVENT_TYPE_LENGTH",
    "PatternError",
    "TypeMatcher",
    "is_event_type",
    "matches",
    "unmatched_patterns",
    "validate_pattern",
]

#: The longest event type (and pattern), in characters.
MAX_EVENT_TYPE_LENGTH = 128

_EVENT_TYPE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")
_SEGMENT = re.compile(r"[a-z0-9_]+|\*")
_ALLOWED = (
    "an event type such as prospect.added, or dotted segments of a-z, 0-9 and _ where a "
    "whole segment may be * (one segment; a trailing * is one or more), or * alone for "
    f"every type; at most {MAX_EVENT_TYPE_LENGTH} characters"
)


class PatternError(ValueError):
    """A subscription's event-type pattern is malformed; the message says what is allowed."""


def is_event_type(name: str) -> bool:
    """Whether ``name`` is a well-formed event type."""
    return len(name) <= MAX_EVENT_TYPE_LENGTH and _EVENT_TYPE.fullmatch(name) is not None


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` normalised (stripped, lowercased), or raise :class:`PatternError`."""
    normalised = pattern.strip().lower()
    shown = pattern if len(pattern) <= 40 else pattern[:40] + "..."
    if not normalised:
        raise PatternError(f"the event-type pattern is empty; use {_ALLOWED}")
    if len(normalised) > MAX_EVENT_TYPE_LENGTH:
        raise PatternError(f"the event-type pattern {shown!r} is too long; use {_ALLOWED}")
    if not normalised.isascii() or not all(
        _SEGMENT.fullmatch(segment) for segment in normalised.split(".")
    ):
        raise PatternError(f"{shown!r} is not a valid event-type pattern; use {_ALLOWED}")
    return normalised


class TypeMatcher:
    """The union of a set of patterns, compiled for the hot path.

    Exact names sit in a frozenset; ``prefix.*`` patterns (the common
    wildcard) become the set of prefixes ``"prefix."``, tested once per dot
    of the event type; the rare patterns with an inner ``*`` are compared
    segment by segment. No regular expression runs per call.

    :meth:`matches` expects a well-formed event type (validated when the event
    was published) and does not validate it again. A matcher without patterns
    matches nothing.
    """

    __slots__ = ("_exact", "_match_all", "_patterns", "_prefixes", "_shapes")

    def __init__(self, patterns: Iterable[str]) -> None:
        normalised = frozenset(validate_pattern(p) for p in patterns)
        exact: set[str] = set()
        prefixes: set[str] = set()
        shapes: list[tuple[tuple[str | None, ...], bool]] = []
        for pattern in normalised:
            segments = pattern.split(".")
            if "*" not in segments:
                exact.add(pattern)
            elif "*" not in segments[:-1]:
                prefixes.add(pattern[:-1])  # "prospect.*" -> "prospect."; "*" -> ""
            else:
                trailing = segments[-1] == "*"
                fixed = segments[:-1] if trailing else segments
                shapes.append((tuple(None if s == "*" else s for s in fixed), trailing))
        self._patterns = normalised
        self._match_all = "" in prefixes
        self._exact = frozenset(exact)
        self._prefixes = frozenset(prefixes)
        self._shapes = tuple(shapes)

    @property
    def patterns(self) -> frozenset[str]:
        """The normalised patterns this matcher was built from."""
        return self._patterns

    def __repr__(self) -> str:
        return f"TypeMatcher({sorted(self._patterns)!r})"

    def matches(self, event_type: str) -> bool:
        """Whether any of the patterns matches ``event_type``."""
        if self._match_all or event_type in self._exact:
            return True
        if self._prefixes:
            last = len(event_type) - 1
            dot = event_type.find(".")
            while 0 <= dot < last:  # a prefix must leave at least one character behind
                if event_type[: dot + 1] in self._prefixes:
                    return True
                dot = event_type.find(".", dot + 1)
        if self._shapes:
            segments = event_type.split(".")
            for fixed, trailing in self._shapes:
                if _fits(fixed, trailing, segments):
                    return True
        return False


def _fits(fixed: tuple[str | None, ...], trailing: bool, segments: list[str]) -> bool:
    if trailing:
        if len(segments) <= len(fixed):
            return False
    elif len(segments) != len(fixed):
        return False
    return all(want is None or want == got for want, got in zip(fixed, segments, strict=False))


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> TypeMatcher:
    return TypeMatcher((pattern,))


def matches(pattern: str, event_type: str) -> bool:
    """Whether ``pattern`` matches ``event_type``; raises :class:`PatternError` on a bad pattern."""
    return _compiled(pattern).matches(event_type)


def unmatched_patterns(patterns: Iterable[str], known: Iterable[str]) -> list[str]:
    """The patterns that match none of the ``known`` event types, in their order.

    Such a pattern is accepted (a type may be added later, with
    ``STREAMS_EVENT_SCHEMAS``), but it is most often a typo (``prospect.creatd``)
    that would otherwise sit silently receiving nothing.
    """
    types = list(known)
    return [p for p in patterns if not any(matches(p, t) for t in types)]
