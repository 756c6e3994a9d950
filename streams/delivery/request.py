"""The HTTP request of one attempt: headers in a fixed precedence, pure.

Precedence, lowest first: the subscription's custom headers, then the
headers every request carries, then the signing profile's headers. Custom
headers naming a reserved header are refused when the subscription is saved
(:mod:`streams.subscriptions.model`) and dropped here again, so they can never
override a signature.

Headers every request carries:

- ``content-type: application/json``
- ``user-agent``: ``STREAMS_USER_AGENT``
- ``webhook-event-type``: the event type
- ``webhook-attempt``: the attempt number (1 for the first)
- ``webhook-replay: true`` on replays and redeliveries
- ``traceparent`` when the event carried one (W3C Trace Context)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streams.records import Delivery, Subscription
from streams.signing import SignatureInput, get_profile


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    url: str
    headers: dict[str, str]
    body: bytes


def build_request(
    delivery: Delivery,
    sub: Subscription,
    *,
    secrets: tuple[str, ...],
    timestamp: int,
    user_agent: str,
    reserved: frozenset[str],
    custom_headers: Mapping[str, str] | None = None,
    url: str | None = None,
) -> PreparedRequest:
    """Everything to send for this attempt. ``timestamp`` is stamped fresh per attempt.

    ``custom_headers``: the subscription's headers with secret values decrypted
    (:func:`streams.subscriptions.headers.reveal`); None sends ``sub.headers`` as stored.
    ``url`` is the clear destination when the subscription's own ``url`` is the masked
    form of a URL that carries a credential (:func:`streams.subscriptions.secrets.destination_url`).
    """
    body = delivery.body_bytes
    profile = get_profile(sub.signing)
    headers: dict[str, str] = {
        name: value
        for name, value in (sub.headers if custom_headers is None else custom_headers).items()
        if name.lower() not in reserved and not name.lower().startswith("webhook-")
    }
    headers["content-type"] = "application/json"
    headers["user-agent"] = user_agent
    headers["webhook-event-type"] = delivery.event_type
    headers["webhook-attempt"] = str(delivery.attempt)
    if delivery.replay_id is not None:
        headers["webhook-replay"] = "true"
    if delivery.traceparent:
        headers["traceparent"] = delivery.traceparent
    headers.update(
        profile.headers(
            SignatureInput(
                msg_id=delivery.delivery_id,
                timestamp=timestamp,
                body=body,
                event_type=delivery.event_type,
                secrets=secrets,
            )
        )
    )
    return PreparedRequest(url=sub.url if url is None else url, headers=headers, body=body)
