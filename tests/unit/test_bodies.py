"""The two documented body shapes, byte for byte."""

from __future__ import annotations

from streams.fanout.bodies import render_body
from streams.records import EventEnvelope

EVENT = EventEnvelope(
    id="evt_1",
    type="prospect.added",
    tenant_id="t_1",
    tenant_name="Busy Print Co.",
    occurred_at="2026-04-26T12:34:56.000Z",
    data={"id": "p1", "name": "Sunshine Promo Co."},
)


def test_the_envelope_shape_is_prowlos_with_a_stable_event_id() -> None:
    assert render_body(EVENT, "envelope", "prospect") == (
        b'{"type":"prospect.added","created_at":"2026-04-26T12:34:56.000Z","id":"evt_1",'
        b'"event_id":"evt_1","data":{"id":"p1","name":"Sunshine Promo Co."}}'
    )


def test_the_keyed_shape_is_prospektrs_with_tenant_and_data_under_its_key() -> None:
    assert render_body(EVENT, "keyed", "prospect") == (
        b'{"type":"prospect.added","tenant":{"id":"t_1","name":"Busy Print Co."},'
        b'"prospect":{"id":"p1","name":"Sunshine Promo Co."}}'
    )
