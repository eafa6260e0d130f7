"""The egress guard: internal addresses in every notation are refused before connecting.

Listeners here are real sockets that count the connections they accept, so "refused
before any connection is made" is what they saw, not what the code claims.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from pipeline.channels.email.outbound import EmailSender
from pipeline.channels.outbound import PermanentFailure, Retryable
from pipeline.channels.web import inbound as web
from pipeline.config import Settings
from pipeline.config.sections import DeliverySettings, LLMSettings, McpServerSettings
from pipeline.egress import (
    EgressPolicy,
    IPAddress,
    blocked_reason,
    guarded_client,
    obviously_internal,
    origin,
    parse_ip_literal,
)
from pipeline.errors import EgressRefused, InboundRejected, LLMError
from pipeline.events.model import Event, Metadata
from pipeline.llm import create_provider
from pipeline.llm.base import ChatMessage, ChatRequest
from pipeline.services.delivery.senders import default_senders, http_client
from pipeline.toolbox.mcp_egress import mcp_http_client

STRICT_HTTP = EgressPolicy.of(True, [])  # http allowed so that address checks are reached
DEV = EgressPolicy.of(True, ["127.0.0.0/8", "::1/128"])


class CountingListener:
    """A TCP listener in a thread: counts accepted connections, answers HTTP 200.

    It closes each connection after one request, unless ``keep_alive``: then it answers
    every request a connection brings until the client closes it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, keep_alive: bool = False) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.keep_alive = keep_alive
        self.accepted = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            if self.keep_alive:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()
            else:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        close = b"" if self.keep_alive else b"Connection: close\r\n"
        with conn:
            conn.settimeout(2)
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    try:
                        chunk = conn.recv(4096)
                    except OSError:
                        return
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = _content_length(head)
                while len(data) < length:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                data = data[length:]
                self.requests.append(head)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n%b\r\n{}" % close)
                if not self.keep_alive:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    yield server
    server.close()


@pytest.fixture
def listener6() -> Iterator[CountingListener]:
    server = CountingListener("::1")
    yield server
    server.close()


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", None),
        ("172.16.0.1", None),
        ("192.168.1.1", None),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", None),
        ("100.100.100.200", None),
        ("0.0.0.0", None),
        ("224.0.0.1", None),
        ("240.0.0.1", None),
        ("255.255.255.255", None),
        ("::1", "loopback"),
        ("::", None),
        ("fd00::1", None),
        ("fd00:ec2::254", None),
        ("fe80::1", "link-local"),
        ("ff02::1", None),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", None),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
    ],
)
def test_internal_addresses_are_blocked(address: str, reason: str | None) -> None:
    # Python versions differ on which category some ranges fall in; blocked they all are.
    found = blocked_reason(ipaddress.ip_address(address))
    assert found is not None
    assert reason is None or found == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("[::1]", "::1"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
    ],
)
def test_ip_literals_are_read_in_every_notation(host: str, address: str) -> None:
    assert parse_ip_literal(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "1password.com", "localhost", ""])
def test_names_are_not_ip_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


def test_policy_networks_allow_only_what_they_name() -> None:
    assert DEV.check_address(ipaddress.ip_address("127.0.0.1")) is None
    assert DEV.check_address(ipaddress.ip_address("10.0.0.1")) == "private"
    assert DEV.check_address(ipaddress.ip_address("169.254.169.254")) == "link-local"


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin("HTTPS://Hooks.Example.com/x?y") == "https://hooks.example.com:443"
    assert origin("https://hooks.example.com:443") == origin("https://hooks.example.com/")
    assert origin("http://hooks.example.com:8080/") == "http://hooks.example.com:8080"


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://10.0.0.7/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://0x7f000001/",
        "https://2130706433/",
        "https://017700000001/",
        "https://127.1/",
        "https://[::1]/",
        "https://[fd12::1]/",
        "https://[fe80::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://100.64.1.1/",
        "http://example.com/",
        "ftp://example.com/",
        "https:///path-only",
    ],
)
def test_strict_policy_refuses_urls_before_any_lookup(url: str) -> None:
    assert EgressPolicy().check_url(url) is not None


def test_strict_policy_passes_a_public_https_url() -> None:
    assert EgressPolicy().check_url("https://hooks.example.com/cb?x=1") is None


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://0x7f000001:8080/", True),
        ("http://2130706433/", True),
        ("http://127.1/", True),
        ("http://169.254.169.254/latest", True),
        ("http://[fe80::1]/", True),
        ("http://0.0.0.0/", True),
        ("http://127.0.0.1:8080/cb", False),
        ("http://10.0.0.1/cb", False),
        ("https://hooks.example.com/cb", False),
    ],
)
def test_obviously_internal_needs_no_settings(url: str, refused: bool) -> None:
    assert (obviously_internal(url) is not None) == refused


# --------------------------------------------------------------------------- connections


def loopback_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/internal",
        f"http://0x7f000001:{port}/hex",
        f"http://2130706433:{port}/decimal",
        f"http://017700000001:{port}/octal",
        f"http://127.1:{port}/short",
        f"http://localhost:{port}/resolves",
        f"http://[::ffff:127.0.0.1]:{port}/mapped",
        f"http://[::ffff:7f00:1]:{port}/mapped-hex",
    ]


async def test_loopback_in_every_form_is_refused_and_the_listener_sees_nothing(
    listener: CountingListener, listener6: CountingListener
) -> None:
    urls = [*loopback_urls(listener.port), f"http://[::1]:{listener6.port}/v6"]
    async with guarded_client(STRICT_HTTP, timeout=2) as client:
        for url in urls:
            with pytest.raises(EgressRefused, match="loopback"):
                await client.post(url, content=b"{}")
    assert (listener.accepted, listener6.accepted) == (0, 0)
    # The same listeners count a connection the policy allows: they were listening.
    async with guarded_client(DEV, timeout=2) as client:
        assert (await client.post(f"http://127.0.0.1:{listener.port}/ok")).status_code == 200
        assert (await client.post(f"http://[::1]:{listener6.port}/ok")).status_code == 200
    assert (listener.accepted, listener6.accepted) == (1, 1)


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",
        "[fd00::1]",
        "[fe80::1]",
        "[::ffff:169.254.169.254]",
    ],
)
async def test_internal_literals_are_refused_without_connecting(host: str) -> None:
    # A connection attempt would end in ConnectError or a timeout; EgressRefused is
    # raised before the socket is opened.
    async with guarded_client(STRICT_HTTP, timeout=2) as client:
        with pytest.raises(EgressRefused):
            await client.post(f"http://{host}:80/", content=b"{}")


def resolver(*answers: list[str]) -> tuple[Any, list[str]]:
    """A resolver giving ``answers`` in turn (the last one repeats), and its call log."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        answer = answers[min(len(calls), len(answers)) - 1]
        return [ipaddress.ip_address(a) for a in answer]

    return resolve, calls


@pytest.mark.parametrize(
    "answer",
    [["10.0.0.5"], ["169.254.169.254"], ["93.184.215.14", "127.0.0.1"], ["fd00::5"]],
)
async def test_a_name_resolving_to_an_internal_address_is_refused(answer: list[str]) -> None:
    resolve, calls = resolver(answer)
    async with guarded_client(STRICT_HTTP, timeout=2, resolve=resolve) as client:
        with pytest.raises(EgressRefused, match="resolves to a"):
            await client.post("http://hooks.example.com/cb", content=b"{}")
    assert calls == ["hooks.example.com"]


async def test_the_connection_goes_to_the_checked_address_keeping_the_host_name(
    listener: CountingListener,
) -> None:
    """DNS rebinding: the name is looked up once per connection and that answer is used.

    The first answer is allowed (127.0.0.1 here); a second connection gets a rebound
    answer (127.0.0.2, not allowed) and is refused; its listener sees nothing.
    """
    rebound = CountingListener("127.0.0.2", listener.port)
    try:
        resolve, calls = resolver(["127.0.0.1"], ["127.0.0.2"])
        policy = EgressPolicy.of(True, ["127.0.0.1/32"])
        url = f"http://rebind.test:{listener.port}/cb"
        async with guarded_client(policy, timeout=2, resolve=resolve) as client:
            first = await client.post(url, content=b"{}")
            with pytest.raises(EgressRefused):
                await client.post(url, content=b"{}")
        assert first.status_code == 200
        assert calls == ["rebind.test", "rebind.test"]
        assert (listener.accepted, rebound.accepted) == (1, 0)
        assert f"host: rebind.test:{listener.port}".encode() in listener.requests[0].lower()
    finally:
        rebound.close()


async def test_connections_are_kept_alive_between_requests_to_the_checked_address() -> None:
    """Sends to one callback host reuse a connection: one lookup, one check, one accept."""
    server = CountingListener(keep_alive=True)
    try:
        resolve, calls = resolver(["127.0.0.1"])
        policy = EgressPolicy.of(True, ["127.0.0.1/32"])
        async with guarded_client(policy, timeout=2, resolve=resolve) as client:
            answers = [
                await client.post(f"http://hooks.test:{server.port}/cb", content=b"{}")
                for _ in range(5)
            ]
        assert [a.status_code for a in answers] == [200] * 5
        assert (server.accepted, len(server.requests), calls) == (1, 5, ["hooks.test"])
    finally:
        server.close()


@pytest.mark.parametrize("host", ["1.2.3.4.5", "999999999999", "127.0.0.1.5"])
async def test_a_numeric_host_that_is_no_address_is_refused(host: str) -> None:
    """aiohttp would hand such a host to the system without asking the guard's resolver."""
    resolve, calls = resolver(["93.184.215.14"])
    async with guarded_client(STRICT_HTTP, timeout=2, resolve=resolve) as client:
        with pytest.raises(EgressRefused, match="not a valid address"):
            await client.post(f"http://{host}/cb", content=b"{}")
    assert calls == []


async def test_no_proxy_from_the_environment_is_used(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = CountingListener()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{proxy.port}")
        async with guarded_client(DEV, timeout=2) as client:
            await client.post(f"http://127.0.0.1:{listener.port}/", content=b"{}")
        assert (listener.accepted, proxy.accepted) == (1, 0)
    finally:
        proxy.close()


async def test_a_refused_url_is_an_egress_refusal_not_an_http_error() -> None:
    async with guarded_client(STRICT_HTTP, timeout=2) as client:
        with pytest.raises(EgressRefused) as caught:
            await client.get("http://127.0.0.1:9/")
    assert not isinstance(caught.value, httpx.HTTPError)


# --------------------------------------------------------------------------- gateway


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://0xa9fea9fe/",
        "http://[fe80::1]/",
        "http://0.0.0.0:8080/",
        "http://224.0.0.1/",
    ],
)
def test_the_web_channel_refuses_an_obviously_internal_callback_with_400(url: str) -> None:
    message = {"user_id": "u1", "text": "hi", "callback_url": url}
    with pytest.raises(InboundRejected) as caught:
        web.parse(json.dumps(message).encode(), "acme")
    assert caught.value.status == 400
    assert "callback_url" in caught.value.reason


@pytest.mark.parametrize(
    "host", ["0x7f000001", "2130706433", "017700000001", "127.1", "0x7f.1", "10.1"]
)
def test_the_web_channel_refuses_a_callback_ip_in_a_non_standard_notation_with_400(
    host: str,
) -> None:
    message = {"user_id": "u1", "text": "hi", "callback_url": f"http://{host}:8080/cb"}
    with pytest.raises(InboundRejected) as caught:
        web.parse(json.dumps(message).encode(), "acme")
    assert caught.value.status == 400
    assert f"{host!r} is an IP address in a non-standard notation" in caught.value.reason


def test_the_web_channel_leaves_loopback_and_names_to_the_delivery_policy() -> None:
    for url in ("http://127.0.0.1:8080/cb", "https://hooks.example.com/cb"):
        message = {"user_id": "u1", "text": "hi", "callback_url": url}
        [event] = web.parse(json.dumps(message).encode(), "acme").events
        assert event.data["reply_to"]["address"] == url


# ------------------------------------------------------- destinations the operator sets


def reply(channel: str, address: str) -> Event:
    metadata = Metadata.new("response_ready", "conv-1", tenant_id="t1", producer="agent")
    reply_to = {"channel": channel, "address": address, "thread_id": None}
    data = {"reply_to": reply_to, "text": "hi", "in_reply_to": None, "proactive": False}
    return Event(metadata, {**data, "ingress_at": None})


def no_proxy_but(monkeypatch: pytest.MonkeyPatch, proxy: CountingListener) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")


@pytest.mark.parametrize("channel", ["slack", "whatsapp"])
async def test_a_channel_api_at_an_internal_address_is_refused_unless_allowed(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch, channel: str
) -> None:
    proxy = CountingListener()
    no_proxy_but(monkeypatch, proxy)
    base = f"http://127.0.0.1:{listener.port}"
    names = {
        "slack_base_url": base,
        "slack_bot_token": "xoxb",
        "whatsapp_base_url": base,
        "whatsapp_phone_number_id": "1",
        "whatsapp_token": "w",
    }
    try:
        for allowed, accepted in (([], 0), (["127.0.0.0/8"], 1)):
            section = DeliverySettings(**names, api_allowed_networks=allowed)
            async with http_client(section) as client:
                sender = default_senders(Settings(delivery=section), client, client)[channel]
                outcome = await sender.send(reply(channel, "C1"))
            assert listener.accepted == accepted, outcome
            if not allowed:
                assert isinstance(outcome, PermanentFailure)
                assert "loopback address" in outcome.error
        assert proxy.accepted == 0, "the environment's HTTPS_PROXY is ignored"
    finally:
        proxy.close()


async def test_an_smtp_server_at_an_internal_address_is_refused_unless_allowed(
    listener: CountingListener,
) -> None:
    settings = {"smtp_host": "127.0.0.1", "smtp_port": listener.port, "timeout_seconds": 0.5}
    refused = await EmailSender(DeliverySettings(**settings, smtp_allowed_networks=[])).send(
        reply("email", "ada@example.com")
    )
    assert isinstance(refused, PermanentFailure) and "loopback address" in refused.error
    assert listener.accepted == 0
    local = await EmailSender(DeliverySettings(**settings)).send(reply("email", "ada@example.com"))
    assert isinstance(local, Retryable), "this machine's relay is allowed by default"
    assert listener.accepted == 1


async def test_an_mcp_server_at_an_internal_address_is_refused_unless_allowed(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = CountingListener()
    no_proxy_but(monkeypatch, proxy)
    url = f"http://127.0.0.1:{listener.port}/mcp"
    try:
        async with mcp_http_client(McpServerSettings(url=url)) as client:
            with pytest.raises(EgressRefused, match="loopback"):
                await client.post(url, json={})
        assert listener.accepted == 0
        allowed = McpServerSettings(url=url, allowed_networks=["127.0.0.0/8"])
        async with mcp_http_client(allowed) as client:
            assert (await client.post(url, json={})).status_code == 200
            with pytest.raises(EgressRefused, match="not a destination the settings name"):
                await client.get(f"http://127.0.0.2:{listener.port}/elsewhere")
        assert (listener.accepted, proxy.accepted) == (1, 0)
    finally:
        proxy.close()


async def test_the_models_base_url_at_an_internal_address_is_refused_unless_allowed(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = CountingListener()
    no_proxy_but(monkeypatch, proxy)
    base = {"provider": "openai", "base_url": f"http://127.0.0.1:{listener.port}/v1"}
    request = ChatRequest(messages=(ChatMessage(role="user", content="hi"),))
    try:
        strict = create_provider(LLMSettings(**base), registry=CollectorRegistry(), service="a")
        with pytest.raises(LLMError, match="loopback"):
            await strict.complete(request)
        await strict.aclose()
        assert listener.accepted == 0
        allowed = LLMSettings(**base, allowed_networks=["127.0.0.0/8"], max_retries=0)
        provider = create_provider(allowed, registry=CollectorRegistry(), service="a")
        with pytest.raises(LLMError):  # the listener's {} is no completion
            await provider.complete(request)
        await provider.aclose()
        assert (listener.accepted, proxy.accepted) == (1, 0)
    finally:
        proxy.close()
