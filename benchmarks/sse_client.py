"""A minimal server-sent-events client over asyncio streams, for the stream benchmark: one
connection per stream, HTTP/1.1, chunked or not, each event timed as it is parsed.

Hand-written for the reason ``turn_http.py`` is: hundreds of streams share two cores with
the broker and the services, so reading them must cost little and stay out of the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


class StreamRefused(Exception):
    """The server did not open the stream (its status line says why)."""


@dataclass(slots=True)
class ServerEvent:
    """One event: its type (``message`` when unnamed), its data and its id."""

    event: str
    data: str
    id: str


class EventStream:
    """An open ``text/event-stream`` response; :meth:`events` yields its events."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunked: bool
    ) -> None:
        self._reader, self._writer, self._chunked = reader, writer, chunked

    @classmethod
    async def open(cls, host: str, port: int, target: str) -> EventStream:
        """GET ``target`` and read the answer's head; raises :class:`StreamRefused`
        unless the answer is 200."""
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError) as exc:
            writer.close()
            raise StreamRefused(f"no answer: {exc!r}") from exc
        status_line, *headers = head.decode("latin-1").split("\r\n")
        if status_line.split(" ", 2)[1] != "200":
            writer.close()
            raise StreamRefused(status_line)
        chunked = any(
            line.lower().startswith("transfer-encoding:") and "chunked" in line.lower()
            for line in headers
        )
        return cls(reader, writer, chunked)

    async def _body(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, chunk framing removed."""
        if not self._chunked:
            while block := await self._reader.read(65536):
                yield block
            return
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                return
            block = await self._reader.readexactly(size)
            await self._reader.readexactly(2)
            yield block

    async def events(self) -> AsyncIterator[ServerEvent]:
        """The stream's events, until the server ends it (comments are skipped)."""
        pending = b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            async for block in self._body():
                pending += block.replace(b"\r\n", b"\n")
                while b"\n\n" in pending:
                    raw, pending = pending.split(b"\n\n", 1)
                    event = _parse(raw.decode())
                    if event is not None:
                        yield event

    def close(self) -> None:
        self._writer.close()


def _parse(raw: str) -> ServerEvent | None:
    fields: dict[str, list[str]] = {}
    for line in raw.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))
    if "data" not in fields:
        return None
    return ServerEvent(
        fields.get("event", ["message"])[-1], "\n".join(fields["data"]), fields.get("id", [""])[-1]
    )
