"""A small keep-alive HTTP/1.1 client on asyncio streams, for load generation on 127.0.0.1 only.

httpx costs a few hundred microseconds of CPU per request; on a 2-core machine the client's CPU is taken
from the services it measures, so the benchmark speaks the protocol itself: one request at a time per
connection, `Content-Length` or chunked bodies, nothing else (no TLS, no redirects, no proxies).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

HOST = "127.0.0.1"


class HttpError(Exception):
    """The server closed the connection or sent something this client does not read."""


class Connection:
    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self._head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{HOST}:{port}", **headers}.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", within: float = 30.0) -> tuple[int, bytes]:
        """(status, body); reconnects once if a kept-alive connection was closed by the server."""
        for attempt in (1, 2):
            if self._writer is None:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, self.port), within
                )
            try:
                return await asyncio.wait_for(self._exchange(method, path, body), within)
            except (ConnectionError, asyncio.IncompleteReadError, HttpError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        head = f"{method} {path} HTTP/1.1\r\n{self._head}"
        if body or method in ("POST", "PUT"):
            head += "Content-Type: application/json\r\n"
            head += f"Content-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        reader = self._reader
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HttpError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if chunked:
            data = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data += await reader.readexactly(size + 2)
                del data[-2:]
                if size == 0:
                    break
            payload = bytes(data)
        elif length is not None:
            payload = await reader.readexactly(length)
        elif status in (204, 304) or method == "HEAD":
            payload = b""
        else:
            raise HttpError("a response without Content-Length and not chunked")
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class Pool:
    """`size` connections to one port, each used by one request at a time."""

    def __init__(self, port: int, size: int, headers: dict[str, str]) -> None:
        self._all = [Connection(port, headers) for _ in range(size)]
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        for conn in self._all:
            self._idle.put_nowait(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)

    async def request(self, method: str, path: str, body: bytes = b"", within: float = 30.0) -> tuple[int, bytes]:
        async with self.connection() as conn:
            return await conn.request(method, path, body, within)

    def close(self) -> None:
        for conn in self._all:
            conn.close()
