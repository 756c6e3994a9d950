"""Structured logs: one JSON object per line, ids from extra=, secrets masked."""

from __future__ import annotations

import io
import logging
import logging.config

import orjson
import pytest

from streams.ops.logs import JsonFormatter, dict_config, log_ids, redact, register_secret
from streams.records import Delivery


def emit(
    logger_name: str, level: int, msg: str, *args: object, **kwargs: object
) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.log(level, msg, *args, **kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    doc: dict[str, object] = orjson.loads(lines[0])
    return doc


def test_a_line_has_time_level_logger_and_message() -> None:
    doc = emit("streams.test", logging.WARNING, "endpoint %s failed %d times", "x", 3)
    assert set(doc) == {"time", "level", "logger", "message"}
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "streams.test"
    assert doc["message"] == "endpoint x failed 3 times"
    assert str(doc["time"]).endswith("Z")
    assert len(str(doc["time"])) == len("2026-04-29T19:12:33.120Z")


def test_delivery_ids_come_from_extra_and_nothing_else_does() -> None:
    delivery = Delivery(
        delivery_id="msg_1",
        event_id="evt_1",
        event_type="a.b",
        tenant_id="t",
        subscription_id="sub_1",
        body="{}",
    )
    doc = emit(
        "streams.test",
        logging.INFO,
        "dead-lettered",
        extra={**log_ids(delivery), "secret": "whsec_abc", "body": "{...}"},
    )
    assert doc["event_id"] == "evt_1"
    assert doc["delivery_id"] == "msg_1"
    assert doc["subscription_id"] == "sub_1"
    assert doc["tenant_id"] == "t"
    assert "secret" not in doc
    assert "body" not in doc


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (
            "signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw now",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("key whsk_AAAABBBBCCCCDDDD=", "whsk_AAAABBBBCCCCDDDD="),
        ("token stk_tok_0123abcd.sEcReT-value_xyz used", "sEcReT-value_xyz"),
        ("admin adm_zfl9-vF1Q9hFuVNjZLE3", "adm_zfl9-vF1Q9hFuVNjZLE3"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("{'authorization': 'bearer s3cr3t'}", "s3cr3t"),
    ],
)
def test_secret_looking_tokens_are_masked(text: str, hidden: str) -> None:
    masked = redact(text)
    assert hidden not in masked
    assert "********" in masked


def test_a_configured_secret_is_masked_wherever_it_appears() -> None:
    register_secret("my-very-own-admin-token-1234")
    doc = emit("streams.test", logging.ERROR, "bad token %s", "my-very-own-admin-token-1234")
    assert "my-very-own-admin-token-1234" not in str(doc)
    register_secret("short")  # too short to mask safely: ignored
    assert redact("a short word") == "a short word"


def test_a_traceback_is_one_field_and_masked_too() -> None:
    try:
        raise ValueError("failed with whsec_0123456789abcdef")
    except ValueError:
        doc = emit("streams.test", logging.ERROR, "boom", exc_info=True)
    assert "ValueError" in str(doc["exc"])
    assert "whsec_0123456789abcdef" not in str(doc)


def test_the_dict_config_routes_every_logger_through_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(dict_config("INFO"))
        logging.getLogger("faust.worker").info("[^Worker]: Starting...")
        logging.getLogger("streams.x").debug("not shown at INFO")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert orjson.loads(err[0])["logger"] == "faust.worker"
