"""One receiver process of a benchmark: ``python -m streams.tools.bench.node``.

It serves the sample receiver's app (:class:`streams.tools.receiver.Receiver`, the
same code as ``streams receiver``) on a port it may share with other nodes
(SO_REUSEPORT: the kernel spreads connections over them) and on a control
port of its own, so the harness can configure each node. It appends every
request to its own JSON-lines ledger and keeps none in memory; the harness
merges the ledgers. Binds 127.0.0.1 only. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiohttp import web

from streams.tools.receiver import Receiver


async def serve(port: int, control_port: int | None, ledger: Path) -> None:
    receiver = Receiver(ledger, keep_entries=False)
    runner = web.AppRunner(receiver.app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=4096).start()
    if control_port:
        await web.TCPSite(runner, "127.0.0.1", control_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.tools.bench.node")
    parser.add_argument("--port", type=int, required=True, help="the shared webhook port")
    parser.add_argument("--control-port", type=int, default=None, help="this node's own port")
    parser.add_argument("--ledger", type=Path, required=True, help="JSON-lines ledger file")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    asyncio.run(serve(args.port, args.control_port, args.ledger))


if __name__ == "__main__":
    main()
