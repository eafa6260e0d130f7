"""A local HTTP server in a thread (a real socket) that records what it receives and
answers in a scripted order: the other end of outbound HTTP calls in tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP server in a thread; answers requests in the scripted order."""

    answers: list[Answer]
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.do_POST("GET")

            def do_PUT(self) -> None:
                self.do_POST("PUT")

            def do_PATCH(self) -> None:
                self.do_POST("PATCH")

            def do_POST(self, method: str = "POST") -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.seen.append(
                    Seen(
                        method,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        self.rfile.read(length),
                    )
                )
                index = min(len(receiver.seen), len(receiver.answers)) - 1
                status, headers, body = receiver.answers[index]
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
