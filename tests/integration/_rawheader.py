"""Produce one record whose header name is not UTF-8, and print its partition and offset.

Kafka stores header names as bytes; no client of ours writes invalid UTF-8 in
one. aiokafka's pure-Python record builder (``AIOKAFKA_NO_EXTENSIONS=1``)
encodes each name with ``name.encode("utf-8")``, so a ``str`` whose ``encode``
returns other bytes gets them onto the wire as they are. Run by
``test_poison.py``: ``python _rawheader.py BOOTSTRAP TOPIC``.
"""

from __future__ import annotations

import asyncio
import os
import sys

assert os.environ.get("AIOKAFKA_NO_EXTENSIONS") == "1", "needs the pure-Python record builder"

from aiokafka import AIOKafkaProducer  # noqa: E402 - after the environment check


class RawName(str):
    """A header name whose bytes on the wire are not UTF-8."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfename"


async def main(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            topic, b"{}", key=b"k", headers=[(RawName("name"), b"value")]
        )
    finally:
        await producer.stop()
    print(meta.partition, meta.offset)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
