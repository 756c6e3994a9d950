"""Tenant ids: their form, and the names the platform keeps for itself.

A tenant id is 1-200 characters of ``A-Z a-z 0-9 . _ : ~ -`` (the envelope
schema's pattern). Ids that start with ``_`` belong to the platform. One is in
use: :data:`PLATFORM_TENANT`, under which a replay started without a tenant
filter (the admin's, across every tenant) announces itself with
``replay.started`` / ``replay.finished`` on the ``ops`` topic. Before these
names were reserved, a tenant called ``_platform`` (or a token made for one)
received those events, with other tenants' replay filters in them.

The whole ``_`` prefix is reserved rather than the one name, so that the next
name the platform needs cannot already belong to a customer. Every way a
tenant id comes in checks it: the API (subscriptions, tokens), token
authentication, the publisher, and the fan-out of raw events on ``events``.
Operational events on ``ops`` under a reserved id are the platform's own and
match no subscription.

Pure: no I/O; errors are raised by the callers, in their own terms.
"""

from __future__ import annotations

import re

#: The tenant of platform-wide operational events (replays across every tenant).
PLATFORM_TENANT = "_platform"
#: Tenant ids starting with this belong to the platform.
RESERVED_PREFIX = "_"
#: The form of every tenant id (with ``fullmatch``: ``$`` alone matches before a newline).
TENANT_ID = re.compile(r"[A-Za-z0-9._:~-]{1,200}")
#: What :func:`problem` says about a reserved id, for the callers' messages.
RESERVED_REASON = (
    f"tenant ids starting with `{RESERVED_PREFIX}` are reserved for the platform "
    f"(`{PLATFORM_TENANT}` carries its own operational events); choose another id"
)


def is_reserved(tenant_id: str) -> bool:
    """True for an id the platform keeps for itself (every id starting with ``_``)."""
    return tenant_id.startswith(RESERVED_PREFIX)


def problem(value: object) -> str | None:
    """What is wrong with ``value`` as a customer's tenant id, or None if nothing is."""
    if not isinstance(value, str) or not TENANT_ID.fullmatch(value):
        return "1-200 characters of A-Z a-z 0-9 . _ : ~ -"
    if is_reserved(value):
        return RESERVED_REASON
    return None
