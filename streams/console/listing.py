"""The endpoint list's filters: a state tab and a search, with each tab's count.

Pure: the page hands in every endpoint it lists with the 24-hour figures its row
shows (attempts and delivered attempts, from the store's hour buckets), and gets
back the endpoints to show and the counts to print.

- ``state`` (``?state=``): ``all`` (the default, also for an empty value),
  ``enabled``, ``disabled`` or ``failing``. Failing: an *enabled* endpoint with at
  least one attempt in its last 24 hours that was not delivered (attempts greater
  than delivered: a retry or a give-up). A disabled endpoint is never failing (it
  is counted under Disabled), and with no figures (the log unreadable) none is.
  Any other value is refused (:class:`InvalidRequestError`; the page answers 400).
- ``q``: trimmed, matched case-insensitively (``casefold``) as a substring of the
  endpoint's URL as listed (a credential in it is masked there, so a search never
  tells anything about it), its description and its id. Over
  :data:`SEARCH_MAX_CHARS` it is not applied and ``error`` says why.
- The counts are per state among the endpoints the search matches (what each tab
  would show); ``total`` is every endpoint listed, before either filter.

The operator's Tenants page counts each tenant's endpoints with the same states
(:func:`by_tenant`), so its Failing figure is the one the tenant's Failing tab shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from streams.errors import InvalidRequestError
from streams.records import Subscription

#: The state tabs, in order: ``?state=`` value -> label.
STATES = {"all": "All", "enabled": "Enabled", "disabled": "Disabled", "failing": "Failing"}
#: The longest search applied (characters, after trimming).
SEARCH_MAX_CHARS = 200
#: What Failing means, in the words of both pages that count it.
FAILING_MEANS = (
    "enabled endpoints with at least one attempt not delivered (retried or given up) "
    "in the last 24 hours"
)


@dataclass(frozen=True)
class Listed:
    """One endpoint of the list and its last 24 hours."""

    sub: Subscription
    attempts: int = 0
    delivered: int = 0

    @property
    def failing(self) -> bool:
        return self.sub.enabled and self.attempts > self.delivered


@dataclass(frozen=True)
class EndpointFilter:
    state: str = "all"
    search: str = ""  # applied (trimmed; empty: none)
    typed: str = ""  # as typed, trimmed: what the search box shows again
    error: str | None = None  # why the typed search was not applied

    @property
    def active(self) -> bool:
        return self.state != "all" or bool(self.search)

    def words(self) -> str:
        """The filter in words: ``Disabled; search “abc”``."""
        parts = [STATES[self.state]] if self.state != "all" else []
        if self.search:
            parts.append(f"search “{self.search}”")
        return "; ".join(parts)


@dataclass(frozen=True)
class Filtered:
    shown: list[Listed]
    counts: dict[str, int]  # per state, among those the search matches
    total: int  # every endpoint listed, before the filters


def parse_filter(query: Mapping[str, str]) -> EndpointFilter:
    state = query.get("state", "") or "all"
    if state not in STATES:
        shown = state if len(state) <= 40 else state[:40] + "…"
        raise InvalidRequestError(
            f"Unknown endpoint state {shown!r}: choose one of {', '.join(STATES)}.",
            field="state",
        )
    typed = query.get("q", "").strip()
    if len(typed) > SEARCH_MAX_CHARS:
        return EndpointFilter(
            state,
            typed=typed,
            error=(
                f"A search is at most {SEARCH_MAX_CHARS} characters (this one has "
                f"{len(typed)}), so it was not applied: search for a part of the URL, "
                "description or id."
            ),
        )
    return EndpointFilter(state, typed, typed)


def in_state(item: Listed, state: str) -> bool:
    if state == "enabled":
        return item.sub.enabled
    if state == "disabled":
        return not item.sub.enabled
    if state == "failing":
        return item.failing
    return True


def matches(sub: Subscription, needle: str) -> bool:
    """``needle`` (casefolded) in the URL, description or id; the empty one everywhere."""
    return any(needle in text.casefold() for text in (sub.url, sub.description or "", sub.id))


def filter_endpoints(listed: Sequence[Listed], chosen: EndpointFilter) -> Filtered:
    needle = chosen.search.casefold()
    found = [item for item in listed if matches(item.sub, needle)]
    counts = {state: sum(in_state(item, state) for item in found) for state in STATES}
    shown = [item for item in found if in_state(item, chosen.state)]
    return Filtered(shown=shown, counts=counts, total=len(listed))


@dataclass(frozen=True)
class TenantCounts:
    """One tenant's endpoints, as its own list's All, Enabled and Failing tabs count them."""

    tenant: str
    endpoints: int = 0
    enabled: int = 0
    failing: int = 0


def by_tenant(listed: Iterable[Listed]) -> list[TenantCounts]:
    """Per tenant: its endpoints, the enabled ones and the failing ones (:func:`in_state`,
    as the tabs count them); the most failing first, then by tenant."""
    found: dict[str, list[Listed]] = {}
    for item in listed:
        found.setdefault(item.sub.tenant_id, []).append(item)
    counts = [
        TenantCounts(
            tenant,
            endpoints=len(items),
            enabled=sum(in_state(item, "enabled") for item in items),
            failing=sum(in_state(item, "failing") for item in items),
        )
        for tenant, items in found.items()
    ]
    return sorted(counts, key=lambda c: (-c.failing, c.tenant))
