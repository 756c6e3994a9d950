"""What the harness added to the sample receiver: a default behaviour, ledger paging,
a ledger kept only on disk, and the `close` (with its status) and `reset` faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from streams.signing import generate_secret
from streams.tools.bench.ceiling import signed_request
from streams.tools.receiver import Receiver


@asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server = TestServer(receiver.app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield f"http://127.0.0.1:{server.port}", session
    finally:
        await server.close()


async def test_the_default_behaviour_applies_to_endpoints_not_named() -> None:
    secret = generate_secret("standard")
    body, headers = signed_request(secret)
    receiver = Receiver()
    async with serve(receiver) as (base, http):
        resp = await http.post(
            f"{base}/_control/endpoints/*", json={"secret": secret, "status": 202}
        )
        assert resp.status == 200
        await http.post(f"{base}/_control/endpoints/named", json={"status": 200})
        assert (await http.post(f"{base}/hooks/any", data=body, headers=headers)).status == 202
        assert (await http.post(f"{base}/hooks/named", data=body, headers=headers)).status == 200
        bad = await http.post(f"{base}/_control/endpoints/*", json={"colour": "blue"})
        assert bad.status == 422
    assert [e["valid"] for e in receiver.entries] == [True, None]


async def test_the_ledger_pages_with_since() -> None:
    receiver = Receiver()
    async with serve(receiver) as (base, http):
        for i in range(3):
            await http.post(f"{base}/hooks/x", data=orjson.dumps({"id": f"e{i}"}))
        first = await (await http.get(f"{base}/_ledger", params={"since": "0"})).json()
        assert [e["event_id"] for e in first["entries"]] == ["e0", "e1", "e2"]
        assert first["next"] == 3
        await http.post(f"{base}/hooks/x", data=orjson.dumps({"id": "e3"}))
        more = await (await http.get(f"{base}/_ledger", params={"since": "3"})).json()
        assert [e["event_id"] for e in more["entries"]] == ["e3"]
        assert (await http.get(f"{base}/_ledger", params={"since": "x"})).status == 422


async def test_a_disk_only_ledger_keeps_nothing_in_memory(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    receiver = Receiver(ledger, keep_entries=False)
    async with serve(receiver) as (base, http):
        await http.post(f"{base}/hooks/x", data=orjson.dumps({"id": "e1"}))
    assert receiver.entries == []
    lines = ledger.read_bytes().splitlines()
    assert orjson.loads(lines[0])["event_id"] == "e1"


@pytest.mark.parametrize("status", [200, 503])
async def test_close_sends_its_status_line_then_cuts_the_body(status: int) -> None:
    receiver = Receiver()
    async with serve(receiver) as (base, http):
        await http.post(f"{base}/_control/endpoints/c", json={"mode": "close", "status": status})
        async with http.post(f"{base}/hooks/c", data=b"{}") as resp:
            assert resp.status == status
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()


async def test_reset_closes_before_any_byte_of_a_response() -> None:
    receiver = Receiver()
    async with serve(receiver) as (base, http):
        await http.post(f"{base}/_control/endpoints/r", json={"mode": "reset"})
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await http.post(f"{base}/hooks/r", data=b"{}")
    assert receiver.entries[0]["mode"] == "reset"
