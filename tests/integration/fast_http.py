"""A bare HTTP/1.1 keep-alive client for load in tests: h11 over asyncio streams.

httpx costs a few milliseconds of CPU per request here, which made the client, not the
gateway, the bottleneck of a 10,000-request fuzz. This does only what the fuzz needs:
one request at a time per connection, ``Content-Length`` bodies, a new connection when
the server closes one. Requests h11 refuses to write (an illegal header) raise
``h11.LocalProtocolError`` before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import h11


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection to ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> Answer:
        message = [("Host", f"{self.host}:{self.port}"), *headers]
        if body or method not in ("GET", "HEAD"):
            message.append(("Content-Length", str(len(body))))
        # Validates the request (h11.LocalProtocolError) before the connection is touched.
        head = h11.Request(method=method, target=target, headers=message)
        reused = self._writer is not None and self._h11.our_state is h11.IDLE
        answer = await self._exchange(head, body)
        if answer is None and reused:
            answer = await self._exchange(head, body)  # the server closed an idle connection
        if answer is None:
            raise ConnectionError(f"{method} {target[:80]}: connection closed without an answer")
        return answer

    async def _exchange(self, head: h11.Request, body: bytes) -> Answer | None:
        if self._writer is None or self._h11.our_state is not h11.IDLE:
            await self._reopen()
        assert self._reader is not None and self._writer is not None
        data = self._h11.send(head) or b""
        if body:
            data += self._h11.send(h11.Data(data=body)) or b""
        data += self._h11.send(h11.EndOfMessage()) or b""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except ConnectionError:
            await self.close()
            return None
        status, headers, chunks = 0, {}, []
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError:  # closed in the middle of an answer
                await self.close()
                return None
            if event is h11.NEED_DATA:
                try:
                    received = await self._reader.read(65536)
                except ConnectionError:
                    received = b""
                self._h11.receive_data(received)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        else:
            await self.close()
        return Answer(status, headers, b"".join(chunks)) if status else None

    async def _reopen(self) -> None:
        await self.close()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._h11 = h11.Connection(h11.CLIENT)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None
