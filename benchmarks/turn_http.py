"""Minimal HTTP/1.1 over asyncio streams for the turn benchmark: a keep-alive client pool
that sends to the gateway, and the callback receiver that takes the replies.

Hand-written on purpose: at hundreds of turns a second the benchmark's own HTTP work
shares two cores with the broker and the services, so it does the least it can (one
write and a header parse per request) and stays out of the figures it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.process
import threading
import time
from multiprocessing.connection import Connection


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP message: its start line and headers block, and its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return head, body


class Connections:
    """Keep-alive connections to one server; a request takes an idle one or opens one."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._open: set[asyncio.StreamWriter] = set()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body`` as JSON; the answer's status, or 0 when no connection answered.

        A kept-alive connection the server closed meanwhile (uvicorn closes idle ones
        after 5 s) is dropped and the request sent again on a new one.
        """
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        ).encode() + body
        while True:
            reused = bool(self._idle)
            try:
                if reused:
                    reader, writer = self._idle.pop()
                else:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                    self._open.add(writer)
            except OSError:
                return 0
            try:
                writer.write(request)
                head, _ = await _read_message(reader)
            except (OSError, asyncio.IncompleteReadError):
                self._open.discard(writer)
                writer.close()
                if reused:
                    continue
                return 0
            if b"connection: close" in head.lower():
                self._open.discard(writer)
                writer.close()
            else:
                self._idle.append((reader, writer))
            return int(head.split(b" ", 2)[1])

    async def close(self) -> None:
        for writer in self._open:
            writer.close()
        self._open.clear()
        self._idle.clear()


class Receiver:
    """The web callback: notes when each conversation's reply arrived, answers ``{}``.

    It serves from a process of its own, as a user's callback server would: in the
    process that drives the load (and reads the topics for the hop table) it would share
    one interpreter lock with them, and its answers, and so the delivery hop, would wait
    for that work. Each reply's arrival time is taken there and sent here over a pipe.
    """

    def __init__(self) -> None:
        self.replies: dict[str, float] = {}  # conversation id -> first reply time
        self.port = 0
        self._process: multiprocessing.process.BaseProcess | None = None
        self._reader: threading.Thread | None = None

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve_replies, args=(theirs,), daemon=True)
        self._process.start()
        theirs.close()
        self.port = await asyncio.to_thread(ours.recv)
        self._reader = threading.Thread(target=self._read, args=(ours,), daemon=True)
        self._reader.start()

    def _read(self, replies: Connection) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                conversation, arrived = replies.recv()
                self.replies.setdefault(conversation, arrived)

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            await asyncio.to_thread(self._process.join, 5)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5)


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _serve_replies(replies: Connection) -> None:
    """The receiver process: its port first, then (conversation, arrival time) per reply."""
    asyncio.run(_receive(replies))


async def _receive(replies: Connection) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            while True:
                _, body = await _read_message(reader)
                now = time.time()
                conversation = json.loads(body).get("conversation_id", "")
                # The gateway keeps a web conversation in its tenant's namespace,
                # web:<tenant>:<the id the client named>; turns are keyed by the latter.
                if conversation.startswith("web:"):
                    conversation = conversation.split(":", 2)[-1]
                writer.write(ANSWER)
                replies.send((conversation, now))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    replies.send(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


class ModelStandIn:
    """An OpenAI-compatible chat-completions server that thinks for ``latency`` seconds.

    ``POST /v1/chat/completions`` answers a turn as a tool-using model would: a request
    without a tool result calls the ``calculator`` with ``12*7``; one that carries the
    tool's result answers with it. Every answer waits ``latency`` seconds first, so a
    turn costs two model calls of that long. It serves from a process of its own (as a
    model provider would be), with the same minimal HTTP as the receiver, so hundreds of
    concurrent calls cost it little of the shared cores.
    """

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.port = 0
        self._process: multiprocessing.process.BaseProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve_model, args=(theirs, self.latency), daemon=True
        )
        self._process.start()
        theirs.close()
        self.port = await asyncio.to_thread(ours.recv)

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            await asyncio.to_thread(self._process.join, 5)


def _serve_model(ports: Connection, latency: float) -> None:
    asyncio.run(_model(ports, latency))


def _completion(message: dict[str, object]) -> bytes:
    body = json.dumps(
        {
            "id": "chatcmpl-stand-in",
            "object": "chat.completion",
            "model": "stand-in",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
        }
    ).encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_CALL = _completion(
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_stand_in",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "12*7"}'},
            }
        ],
    }
)


async def _model(ports: Connection, latency: float) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            while True:
                _, body = await _read_message(reader)
                messages = json.loads(body).get("messages") or []
                result = next((m for m in reversed(messages) if m.get("role") == "tool"), None)
                if result is None:
                    answer = _CALL
                else:
                    text = f"12*7 = {result.get('content')}"
                    answer = _completion({"role": "assistant", "content": text})
                await asyncio.sleep(latency)
                writer.write(answer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=4096)
    ports.send(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()
