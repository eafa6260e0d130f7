"""Local stand-ins for the channel APIs, so the whole pipeline runs on one machine.

One HTTP server answers as Slack's ``chat.postMessage``, WhatsApp's messages API and a
web chat callback (which, like a careful receiver, checks the callback's signature and
refuses an unsigned or forged one with 401); an SMTP server takes email replies.
Everything received is kept, in order, for whoever wants to see what the users would
have seen.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pipeline.channels.web import signature
from pipeline.dev.stack.local import DEVELOPMENT_CALLBACK_SECRET


@dataclass(frozen=True)
class Delivered:
    channel: str
    to: str
    text: str
    received_at: float
    detail: dict[str, Any] = field(default_factory=dict)


class Inbox:
    """Thread-safe record of every message the stand-ins received."""

    def __init__(self) -> None:
        self._items: list[Delivered] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def add(self, item: Delivered) -> int:
        with self._lock:
            self._items.append(item)
            return next(self._ids)

    def items(self) -> list[Delivered]:
        with self._lock:
            return list(self._items)


def receiver_app(inbox: Inbox, callback_secret: str) -> FastAPI:
    app = FastAPI(title="channel stand-ins", openapi_url=None)

    @app.post("/web/callback")
    async def web(request: Request) -> JSONResponse:
        raw = await request.body()
        if not signature.verify(callback_secret, request.headers, raw):
            return JSONResponse({"error": "bad or missing callback signature"}, status_code=401)
        body = json.loads(raw)
        key = request.headers.get("idempotency-key", "")
        if any(i.detail.get("idempotency_key") == key for i in inbox.items() if key):
            return JSONResponse({"status": "duplicate"})
        inbox.add(
            Delivered(
                "web",
                body.get("conversation_id", ""),
                body.get("text", ""),
                time.time(),
                {"idempotency_key": key},
            )
        )
        return JSONResponse({"status": "ok"})

    @app.post("/slack/api/chat.postMessage")
    async def slack(request: Request) -> JSONResponse:
        body = await request.json()
        number = inbox.add(
            Delivered(
                "slack",
                body.get("channel", ""),
                body.get("text", ""),
                time.time(),
                {"thread_ts": body.get("thread_ts")},
            )
        )
        return JSONResponse({"ok": True, "channel": body.get("channel"), "ts": f"{number}.0001"})

    @app.post("/whatsapp/{phone_number_id}/messages")
    async def whatsapp(phone_number_id: str, request: Request) -> JSONResponse:
        body = await request.json()
        text = (body.get("text") or {}).get("body", "")
        number = inbox.add(
            Delivered("whatsapp", body.get("to", ""), text, time.time(), {"from": phone_number_id})
        )
        return JSONResponse({"messages": [{"id": f"wamid.demo{number}"}]})

    return app


class _SmtpHandler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(("plain",))
        text = body.get_content().strip() if body is not None else ""
        self.inbox.add(
            Delivered(
                "email",
                ", ".join(envelope.rcpt_tos),
                text,
                time.time(),
                {"subject": message["Subject"], "in_reply_to": message["In-Reply-To"]},
            )
        )
        return "250 OK"


class Receivers:
    """The HTTP and SMTP stand-ins, each in its own thread, on 127.0.0.1."""

    def __init__(
        self, http_port: int, smtp_port: int, callback_secret: str = DEVELOPMENT_CALLBACK_SECRET
    ) -> None:
        self.inbox = Inbox()
        self.callback_secret = callback_secret
        self.http_port = http_port
        self.smtp_port = smtp_port
        config = uvicorn.Config(
            receiver_app(self.inbox, callback_secret),
            host="127.0.0.1",
            port=http_port,
            log_level="warning",
            lifespan="off",
        )
        self._http = uvicorn.Server(config)
        self._http_thread = threading.Thread(target=self._serve, name="receiver", daemon=True)
        self._smtp = Controller(_SmtpHandler(self.inbox), hostname="127.0.0.1", port=smtp_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _serve(self) -> None:
        asyncio.run(self._http.serve())

    def start(self) -> None:
        self._http_thread.start()
        self._smtp.start()
        deadline = time.monotonic() + 10
        while not self._http.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self._http.should_exit = True
        self._http_thread.join(10)
        self._smtp.stop()
