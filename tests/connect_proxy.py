"""A small HTTP CONNECT proxy for tests, run as its own process.

    python -m tests.connect_proxy --port-file P --log L [--auth user:pass] [--deny HOST:PORT]

It listens on 127.0.0.1 (a port the kernel picks, written to ``--port-file``),
writes one line per request to ``--log`` *before* acting on it
(``CONNECT 127.0.0.1:8443 host=localhost:8443``), and then:

- answers ``407`` (with ``Proxy-Authenticate``) when ``--auth`` is set and the
  request's ``Proxy-Authorization`` is not that user and password;
- answers ``403`` to a CONNECT whose target is ``--deny``;
- answers ``405`` to anything but CONNECT (deliveries go over TLS: tunnels only);
- otherwise connects to the target, answers ``200 Connection established``
  and relays bytes both ways until either side closes.

Like a real egress proxy it applies no destination policy of its own: the
worker must never ask it for a forbidden address, and the log shows whether it
did. Every wait is bounded (headers 10 s, connecting 5 s, idle tunnels 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

HEADER_LIMIT = 16_384
IDLE_S = 30.0


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65_536), IDLE_S)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


class Proxy:
    def __init__(self, log: Path, auth: str | None, deny: str | None) -> None:
        self.log = log
        self.expected = (
            "Basic " + base64.b64encode(auth.encode()).decode() if auth is not None else None
        )
        self.deny = deny

    def record(self, line: str) -> None:
        with self.log.open("a") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rsplit(" ", 1)[0]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        self.record(f"{method} {target} host={headers.get('host', '')}")
        if self.expected is not None and headers.get("proxy-authorization") != self.expected:
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="egress"\r\nContent-Length: 0\r\n\r\n'
            )
            await writer.drain()
            writer.close()
            return
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if target == self.deny:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        host, _, port = target.rpartition(":")
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), 5
            )
        except (OSError, TimeoutError, ValueError):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_relay(reader, upstream_writer), _relay(upstream_reader, writer))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--auth", default=None)
    parser.add_argument("--deny", default=None)
    args = parser.parse_args()
    proxy = Proxy(args.log, args.auth, args.deny)
    args.log.touch()
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0, limit=HEADER_LIMIT)
    port = server.sockets[0].getsockname()[1]
    partial = args.port_file.with_suffix(".partial")
    partial.write_text(str(port))
    partial.replace(args.port_file)  # readers never see a half-written port
    async with server:
        await server.serve_forever()


class ProxyProcess:
    """This proxy in a child process, for a test (``with ProxyProcess(tmp_path) as proxy``)."""

    def __init__(self, directory: Path, *, auth: str | None = None, deny: str | None = None):
        self.directory = directory
        self.log = directory / "proxy.log"
        self.port_file = directory / "proxy.port"
        self.argv = [sys.executable, "-m", "tests.connect_proxy"]
        self.argv += ["--port-file", str(self.port_file), "--log", str(self.log)]
        self.argv += ["--auth", auth] if auth else []
        self.argv += ["--deny", deny] if deny else []
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> ProxyProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        root = Path(__file__).resolve().parents[1]
        self.proc = subprocess.Popen(self.argv, cwd=root, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the test proxy did not start")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """The request lines the proxy received, in order."""
        return self.log.read_text().splitlines() if self.log.exists() else []


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
