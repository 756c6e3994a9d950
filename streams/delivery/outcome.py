"""What one delivery attempt's result means: delivered, retry, or give up.

:func:`classify` turns an attempt's HTTP status (or transport error) into an
:class:`Outcome`. The rules:

============================================  ===========================================
result                                        outcome
============================================  ===========================================
2xx                                           :class:`Delivered`
410 Gone, or an answer that says the          :class:`GiveUp`, ``disable=True``
endpoint was deleted (``gone``, read by
:mod:`streams.delivery.chat` for Slack
and Discord)
:attr:`ErrorKind.DESTINATION_REFUSED`,        :class:`GiveUp`, ``disable=False``
:attr:`ErrorKind.INVALID_URL`
429, 503                                      :class:`Retry`, honouring ``Retry-After``
any other 1xx, 3xx, 4xx, 5xx                  :class:`Retry` (``Retry-After`` ignored)
any other transport error (timeouts,          :class:`Retry`
refused/reset connections, DNS, TLS,
protocol errors), and
:attr:`ErrorKind.CIRCUIT_OPEN` (skipped,
see :mod:`streams.delivery.breaker`), and
:attr:`ErrorKind.PROXY_ERROR` (the egress
proxy is down or refused the tunnel)
============================================  ===========================================

Why so few give-ups: one of the products we power promises its customers
that "any non-2xx response triggers a retry". Receivers usually fix the cause
of a 4xx within the retry window (a wrong secret answers 401, a route not yet
deployed 404), and giving up at the first 4xx would lose the deliveries that
the fix would have saved. Redirects (3xx) are never followed, since a
redirect could point past the destination policy, so they are retried like
any other non-2xx answer. 410 Gone is the receiver's explicit request to
stop: the subscription is disabled. A destination the policy refuses, or a
URL that cannot be sent to, cannot succeed later without someone changing
the subscription, so those give up without disabling (the retries would be
wasted; auto-disable is decided elsewhere, from repeated failures).

Only 429 Too Many Requests and 503 Service Unavailable carry a
``Retry-After`` worth honouring (RFC 9110 §10.2.3, RFC 6585 §4); on other
statuses the header is ignored.

A status, when there is one, wins over a transport error passed with it:
the receiver answered, e.g. a 200 whose body was cut off still counts as
delivered.

Reasons are short human phrases ("HTTP 503", "timeout", "connection refused")
that end up in attempt logs and auto-disable messages; :func:`status_class`
gives bounded metric labels.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Delivered",
    "ErrorKind",
    "GiveUp",
    "Outcome",
    "Retry",
    "classify",
    "reason_for_error",
    "reason_for_status",
    "status_class",
]


class ErrorKind(enum.StrEnum):
    """Why an attempt got no HTTP status. Values are stable metric/log labels."""

    CONNECT_TIMEOUT = "connect_timeout"
    READ_TIMEOUT = "read_timeout"
    WRITE_TIMEOUT = "write_timeout"
    POOL_TIMEOUT = "pool_timeout"
    TOTAL_TIMEOUT = "total_timeout"
    CONNECT_ERROR = "connect_error"
    CONNECTION_RESET = "connection_reset"  # including a connection closed mid-response
    DNS_ERROR = "dns_error"
    TLS_ERROR = "tls_error"
    PROTOCOL_ERROR = "protocol_error"
    DESTINATION_REFUSED = "destination_refused"
    INVALID_URL = "invalid_url"
    CIRCUIT_OPEN = "circuit_open"  # no request sent: the endpoint's breaker is open
    PROXY_ERROR = "proxy_error"  # the egress proxy is unreachable or refused the tunnel


_ERROR_REASONS: dict[ErrorKind, str] = {
    ErrorKind.CONNECT_TIMEOUT: "connect timeout",
    ErrorKind.READ_TIMEOUT: "read timeout",
    ErrorKind.WRITE_TIMEOUT: "write timeout",
    ErrorKind.POOL_TIMEOUT: "connection pool timeout",
    ErrorKind.TOTAL_TIMEOUT: "timeout",
    ErrorKind.CONNECT_ERROR: "connection refused",
    ErrorKind.CONNECTION_RESET: "connection reset",
    ErrorKind.DNS_ERROR: "DNS lookup failed",
    ErrorKind.TLS_ERROR: "TLS handshake failed",
    ErrorKind.PROTOCOL_ERROR: "invalid HTTP response",
    ErrorKind.DESTINATION_REFUSED: "destination refused by policy",
    ErrorKind.INVALID_URL: "invalid URL",
    ErrorKind.CIRCUIT_OPEN: "circuit open: the endpoint keeps failing, no request sent",
    ErrorKind.PROXY_ERROR: "egress proxy failed",
}

_GIVE_UP_ERRORS = frozenset({ErrorKind.DESTINATION_REFUSED, ErrorKind.INVALID_URL})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE_REASON = "410 Gone: the endpoint asked to stop"


@dataclass(frozen=True, slots=True)
class Delivered:
    """The receiver answered 2xx."""

    status: int


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again on the schedule (or after ``retry_after`` seconds, when set)."""

    reason: str
    status: int | None
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop retrying this delivery; ``disable`` also disables the subscription."""

    reason: str
    status: int | None
    disable: bool


Outcome = Delivered | Retry | GiveUp


def reason_for_error(error: ErrorKind) -> str:
    """The human phrase for a transport error: ``"timeout"``, ``"connection refused"``."""
    return _ERROR_REASONS[error]


def reason_for_status(status: int) -> str:
    """The human phrase for a status: ``"HTTP 503"``; redirects say they were not followed."""
    if 300 <= status <= 399:
        return f"HTTP {status} (redirects are not followed)"
    return f"HTTP {status}"


def classify(
    status: int | None,
    error: ErrorKind | None,
    retry_after: float | None,
    *,
    gone: str | None = None,
) -> Outcome:
    """The outcome of one attempt: see the table in the module docstring.

    ``retry_after`` is the already parsed ``Retry-After`` delay in seconds
    (see :func:`streams.retry.schedule.parse_retry_after`); it is kept only
    on a :class:`Retry` for 429 and 503. ``gone`` is the reason when the
    answer says the endpoint was deleted. Raises :class:`ValueError` when
    neither a status nor an error is given.
    """
    if status is not None:
        if 200 <= status <= 299:
            return Delivered(status)
        if gone is not None:
            return GiveUp(gone, status, disable=True)
        if status == 410:
            return GiveUp(GONE_REASON, status, disable=True)
        kept = retry_after if status in _RETRY_AFTER_STATUSES else None
        return Retry(reason_for_status(status), status, kept)
    if error is None:
        raise ValueError("an attempt has either an HTTP status or a transport error")
    if error in _GIVE_UP_ERRORS:
        return GiveUp(reason_for_error(error), None, disable=False)
    return Retry(reason_for_error(error), None, None)


def status_class(status: int | None) -> str:
    """A bounded metric label: ``"2xx"``, ``"3xx"``, ``"4xx"``, ``"5xx"`` or ``"error"``.

    ``"error"`` covers attempts without a status and statuses outside
    200-599 (a final 1xx is a protocol violation).
    """
    if status is None or not 200 <= status <= 599:
        return "error"
    return f"{status // 100}xx"
