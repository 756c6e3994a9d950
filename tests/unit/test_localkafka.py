"""The local broker's pure parts."""

from __future__ import annotations

import uuid

from streams.kafka.local import new_cluster_id


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    drawn = iter(
        [
            uuid.UUID(bytes=b"\xf8" + b"\x00" * 15),  # base64url "-AAAAAAAAAAAAAAAAAAAAA"
            uuid.UUID(bytes=b"\x00" * 16),
        ]
    )
    assert new_cluster_id(lambda: next(drawn)) == "AAAAAAAAAAAAAAAAAAAAAA"


def test_a_cluster_id_is_22_base64url_characters() -> None:
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22
    assert set(cluster_id) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
