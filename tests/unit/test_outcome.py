"""Outcome classification: what one attempt's status or transport error means."""

from __future__ import annotations

import dataclasses

import pytest

from streams.delivery.outcome import (
    Delivered,
    ErrorKind,
    GiveUp,
    Outcome,
    Retry,
    classify,
    status_class,
)

# (status, transport error, parsed Retry-After, expected outcome)
CLASSIFICATION = [
    # 2xx: delivered
    (200, None, None, Delivered(200)),
    (201, None, None, Delivered(201)),
    (202, None, 30.0, Delivered(202)),
    (204, None, None, Delivered(204)),
    (299, None, None, Delivered(299)),
    # 410: the receiver asked to stop
    (410, None, None, GiveUp("410 Gone: the endpoint asked to stop", 410, disable=True)),
    (410, None, 60.0, GiveUp("410 Gone: the endpoint asked to stop", 410, disable=True)),
    # every other status is retried; Retry-After only for 429 and 503
    (429, None, 30.0, Retry("HTTP 429", 429, 30.0)),
    (429, None, None, Retry("HTTP 429", 429, None)),
    (503, None, 120.0, Retry("HTTP 503", 503, 120.0)),
    (500, None, 120.0, Retry("HTTP 500", 500, None)),
    (502, None, None, Retry("HTTP 502", 502, None)),
    (504, None, None, Retry("HTTP 504", 504, None)),
    (400, None, None, Retry("HTTP 400", 400, None)),
    (401, None, None, Retry("HTTP 401", 401, None)),
    (403, None, None, Retry("HTTP 403", 403, None)),
    (404, None, None, Retry("HTTP 404", 404, None)),
    (408, None, 10.0, Retry("HTTP 408", 408, None)),
    (413, None, None, Retry("HTTP 413", 413, None)),
    (422, None, None, Retry("HTTP 422", 422, None)),
    (301, None, None, Retry("HTTP 301 (redirects are not followed)", 301, None)),
    (302, None, None, Retry("HTTP 302 (redirects are not followed)", 302, None)),
    (307, None, None, Retry("HTTP 307 (redirects are not followed)", 307, None)),
    (308, None, None, Retry("HTTP 308 (redirects are not followed)", 308, None)),
    (304, None, None, Retry("HTTP 304 (redirects are not followed)", 304, None)),
    (101, None, None, Retry("HTTP 101", 101, None)),
    # transport errors
    (None, ErrorKind.CONNECT_TIMEOUT, None, Retry("connect timeout", None, None)),
    (None, ErrorKind.READ_TIMEOUT, None, Retry("read timeout", None, None)),
    (None, ErrorKind.WRITE_TIMEOUT, None, Retry("write timeout", None, None)),
    (None, ErrorKind.POOL_TIMEOUT, None, Retry("connection pool timeout", None, None)),
    (None, ErrorKind.TOTAL_TIMEOUT, None, Retry("timeout", None, None)),
    (None, ErrorKind.CONNECT_ERROR, None, Retry("connection refused", None, None)),
    (None, ErrorKind.CONNECTION_RESET, None, Retry("connection reset", None, None)),
    (None, ErrorKind.DNS_ERROR, None, Retry("DNS lookup failed", None, None)),
    (None, ErrorKind.TLS_ERROR, None, Retry("TLS handshake failed", None, None)),
    (None, ErrorKind.PROTOCOL_ERROR, None, Retry("invalid HTTP response", None, None)),
    (None, ErrorKind.READ_TIMEOUT, 30.0, Retry("read timeout", None, None)),
    (
        None,
        ErrorKind.DESTINATION_REFUSED,
        None,
        GiveUp("destination refused by policy", None, disable=False),
    ),
    (None, ErrorKind.INVALID_URL, None, GiveUp("invalid URL", None, disable=False)),
    # skipped by an open circuit breaker: scheduled like any failed attempt
    (
        None,
        ErrorKind.CIRCUIT_OPEN,
        None,
        Retry("circuit open: the endpoint keeps failing, no request sent", None, None),
    ),
    # the egress proxy is down or refused the tunnel: retried until it is fixed
    (None, ErrorKind.PROXY_ERROR, None, Retry("egress proxy failed", None, None)),
    # a status wins over an error reported with it: the receiver did answer
    (200, ErrorKind.CONNECTION_RESET, None, Delivered(200)),
    (503, ErrorKind.READ_TIMEOUT, 5.0, Retry("HTTP 503", 503, 5.0)),
]


@pytest.mark.parametrize(
    ("status", "error", "retry_after", "expected"),
    CLASSIFICATION,
    ids=[f"{s}-{e}-{r}" for s, e, r, _ in CLASSIFICATION],
)
def test_classify_maps_each_result_to_the_documented_outcome(
    status: int | None, error: ErrorKind | None, retry_after: float | None, expected: Outcome
) -> None:
    assert classify(status, error, retry_after) == expected


def test_every_error_kind_has_a_row_in_the_classification_table() -> None:
    assert {row[1] for row in CLASSIFICATION if row[0] is None} == set(ErrorKind)


def test_an_attempt_with_neither_status_nor_error_cannot_be_classified() -> None:
    with pytest.raises(ValueError, match="either an HTTP status or a transport error"):
        classify(None, None, None)


def test_error_kinds_have_stable_snake_case_labels() -> None:
    assert [kind.value for kind in ErrorKind] == [
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "pool_timeout",
        "total_timeout",
        "connect_error",
        "connection_reset",
        "dns_error",
        "tls_error",
        "protocol_error",
        "destination_refused",
        "invalid_url",
        "circuit_open",
        "proxy_error",
    ]


def test_outcomes_are_immutable_values() -> None:
    outcome = classify(503, None, 5.0)
    assert isinstance(outcome, Retry)
    assert hash(outcome) == hash(Retry("HTTP 503", 503, 5.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.reason = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (200, "2xx"),
        (204, "2xx"),
        (301, "3xx"),
        (404, "4xx"),
        (410, "4xx"),
        (429, "4xx"),
        (500, "5xx"),
        (599, "5xx"),
        (None, "error"),
        (101, "error"),
        (99, "error"),
        (600, "error"),
        (0, "error"),
    ],
)
def test_status_class_gives_a_bounded_metric_label(status: int | None, label: str) -> None:
    assert status_class(status) == label
