"""Outbound calls that cannot reach inside: one checked resolver for every one of them.

A callback URL comes from a client, so sending to it must not let that client reach
the pipeline's own network (server-side request forgery). Destinations an operator
sets (the Slack and WhatsApp API base URLs, the SMTP server, an MCP server's URL, the
model's base URL) go through the same checks, so a mistaken or tampered setting cannot
reach the cluster's inside either unless a setting allows that network. :class:`EgressPolicy`
says what may be reached; :func:`guarded_client` is an HTTP client that enforces it and
:func:`checked_socket` a TCP connection (SMTP) that does:

- the scheme is https (http only when the policy allows it, for development);
- the host is resolved, and every address it resolves to must be public: loopback,
  private, shared (CGNAT), link-local (cloud metadata at 169.254.169.254), reserved,
  multicast and unspecified addresses are refused, also inside IPv4-mapped, 6to4,
  Teredo and NAT64 IPv6 forms, unless the address is in one of the policy's
  ``allowed_networks``;
- the connection goes to the address that was checked (the name is not looked up a
  second time, so a DNS answer that changes in between cannot redirect it), while the
  Host header and TLS server name stay those of the URL; a connection kept alive for
  the next request stays with that address, and a new one is looked up and checked;
- no redirects are followed (or, for a client that must follow them, only to the
  policy's ``allowed_origins``: the destinations the settings name) and no proxy from
  the environment is used unless the caller's setting asks for it (``trust_env``; the
  proxy's own address is then what is checked and connected to).

A refusal raises :class:`EgressRefused` before any connection is made.
:func:`obviously_internal` is the cheap syntactic part, for where a URL comes in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import aiohttp
import anyio
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport
from pydantic import AfterValidator, AnyHttpUrl, BeforeValidator

from pipeline.errors import EgressRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Not "global" to Python in every version, or inside a range Python calls global.
_ALSO_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # shared address space (CGNAT, Alibaba metadata)
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` is internal (``"loopback"``, ``"private"``...), or None if public.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by
    the IPv4 address inside them.
    """
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return blocked_reason(inner)
    for reason, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return reason
    if any(address in network for network in _ALSO_BLOCKED):
        return "shared or special-purpose"
    if not address.is_global:
        return "not globally routable"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host denotes when it is an IP literal in any notation, else None.

    Besides the canonical forms this reads what ``inet_aton`` (and so the resolver)
    reads: hex ``0x7f000001``, decimal ``2130706433``, octal ``017700000001`` and short
    ``127.1``.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def obviously_internal(url: str) -> str | None:
    """A syntactic check needing no settings and no DNS, for where a URL enters.

    The reason when the URL's host is an IP literal in a non-canonical notation, or one
    no deployment would call back to (link-local and metadata, multicast, unspecified,
    reserved); None otherwise. Loopback and private literals pass here: whether they
    are allowed is the delivery service's policy to decide.
    """
    host = urlsplit(url).hostname or ""
    address = parse_ip_literal(host)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv4Address) and host != str(address):
        return f"host {host!r} is an IP address in a non-standard notation"
    reason = blocked_reason(address)
    if reason in ("link-local", "multicast", "unspecified", "reserved"):
        return f"host {host!r} is a {reason} address"
    return None


def _not_obviously_internal(url: AnyHttpUrl) -> AnyHttpUrl:
    reason = obviously_internal(str(url))
    if reason is not None:
        raise ValueError(reason)
    return url


def _as_written_not_obviously_internal(value: object) -> object:
    # The URL type rewrites 0x7f000001, 2130706433 or 127.1 to 127.0.0.1 before any
    # check after it runs, so the notation is judged on the text as it was written.
    if isinstance(value, str):
        reason = obviously_internal(value)
        if reason is not None:
            raise ValueError(reason)
    return value


CallbackUrl = Annotated[
    AnyHttpUrl,
    BeforeValidator(_as_written_not_obviously_internal),
    AfterValidator(_not_obviously_internal),
]
"""An http(s) URL field that refuses, where it enters, what :func:`obviously_internal` does."""


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """What an outbound URL may reach.

    ``allow_http`` and ``allowed_networks`` loosen the defaults for development and
    tests (local receivers on 127.0.0.1 over http) and for operator-set destinations
    inside the cluster; production callbacks leave both off. ``allowed_origins``, when
    not empty, are the only ``scheme://host:port`` requests may go to (redirects too).
    """

    allow_http: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_origins: frozenset[str] = frozenset()

    @classmethod
    def of(cls, allow_http: bool, allowed_networks: Iterable[IPNetwork | str]) -> EgressPolicy:
        return cls(allow_http, tuple(ipaddress.ip_network(n) for n in allowed_networks))

    @classmethod
    def for_destinations(
        cls, urls: Iterable[str], allowed_networks: Iterable[IPNetwork | str]
    ) -> EgressPolicy:
        """The policy of destinations an operator set: only their origins, over the
        scheme each names, at public addresses or in ``allowed_networks``."""
        named = list(urls)
        return cls(
            allow_http=any(u.strip().lower().startswith("http://") for u in named),
            allowed_networks=tuple(ipaddress.ip_network(n) for n in allowed_networks),
            allowed_origins=frozenset(origin(u) for u in named),
        )

    def check_origin(self, url: str) -> str | None:
        """Why ``url`` is not one of the allowed origins, or None."""
        if self.allowed_origins and origin(url) not in self.allowed_origins:
            return f"{origin(url)} is not a destination the settings name; not connecting"
        return None

    def check_address(self, address: IPAddress) -> str | None:
        """Why connecting to ``address`` is refused, or None when it is allowed."""
        if any(address in network for network in self.allowed_networks):
            return None
        return blocked_reason(address)

    def check_url(self, url: str) -> str | None:
        """What is wrong with ``url`` before any lookup (scheme, host, IP literal), or None."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            return "callback URL is not a valid URL"
        allowed = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in allowed:
            return f"callback URL scheme must be {' or '.join(allowed)}, not {parts.scheme!r}"
        host = parts.hostname
        if not host:
            return "callback URL has no host"
        address = parse_ip_literal(host)
        if address is not None:
            reason = self.check_address(address)
            if reason is not None:
                return f"host {host!r} is a {reason} address"
        return None


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, lower-cased, with the scheme's default port."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses the system resolver gives for ``host``, in its order."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class _GuardedResolver(AbstractResolver):
    """aiohttp's name lookup for the guarded pool: resolves the name, checks every
    address, and gives aiohttp only checked ones to connect to.

    aiohttp asks it once per new connection (its DNS cache is off), so a kept-alive
    connection stays with the address checked when it was opened.
    """

    def __init__(self, policy: EgressPolicy, resolve: Resolver) -> None:
        self.policy = policy
        self._resolve = resolve

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = parse_ip_literal(host)
        addresses = [literal] if literal is not None else await self._resolve(host, port)
        if not addresses:
            raise OSError(f"{host!r} resolves to no address")
        for address in addresses:
            reason = self.policy.check_address(address)
            if reason is not None:
                raise EgressRefused(f"host {host!r} resolves to a {reason} address; not connecting")
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in dict.fromkeys(addresses)
        ]

    async def close(self) -> None:
        return None


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's interface on an aiohttp connection pool whose every connection is checked.

    Connections are kept alive between requests (per host and port, as many as
    ``limits`` allow) instead of opened for each send. A name is resolved and checked by
    :class:`_GuardedResolver` when a connection is opened; an IP literal, which aiohttp
    connects to without asking its resolver, is checked here before the request.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        resolve: Resolver = system_resolve,
        trust_env: bool = False,
    ) -> None:
        self.policy = policy
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        connections = limits.max_connections or 0

        def session() -> aiohttp.ClientSession:
            # Made on the first request, inside the running loop; no proxy from the
            # environment unless asked (trust_env), no cached lookups (each connection
            # checks).
            connector = aiohttp.TCPConnector(
                limit=connections,
                keepalive_timeout=limits.keepalive_expiry,
                ssl=ssl_context,
                resolver=_GuardedResolver(policy, resolve),
                use_dns_cache=False,
            )
            return aiohttp.ClientSession(connector=connector, trust_env=trust_env)

        self._inner = AiohttpTransport(client=session)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        elsewhere = self.policy.check_origin(str(request.url))
        if elsewhere is not None:
            raise EgressRefused(elsewhere)
        host = request.url.host
        literal = parse_ip_literal(host)
        if literal is not None:
            reason = self.policy.check_address(literal)
            if reason is not None:
                raise EgressRefused(f"host {host!r} is a {reason} address; not connecting")
        elif _looks_numeric(host):
            # aiohttp would hand it to the system to connect to without a lookup of ours.
            raise EgressRefused(f"host {host!r} is not a valid address; not connecting")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _looks_numeric(host: str) -> bool:
    """What aiohttp takes for an IP address and connects to without resolving it."""
    return ":" in host or host.replace(".", "").isdigit()


def guarded_client(
    policy: EgressPolicy,
    *,
    timeout: float | httpx.Timeout,
    verify: ssl.SSLContext | bool = True,
    headers: dict[str, str] | None = None,
    resolve: Resolver = system_resolve,
    limits: httpx.Limits = DEFAULT_LIMITS,
    follow_redirects: bool = False,
    trust_env: bool = False,
) -> httpx.AsyncClient:
    """An HTTP client for outbound URLs: checked addresses, no redirects, no proxy.

    ``verify`` is the TLS trust (an ``ssl.SSLContext`` for a private CA in tests);
    ``resolve`` looks names up (the system resolver; tests give their own); ``limits``
    bounds the connections, which are kept alive between requests. ``follow_redirects``
    only with a policy of ``allowed_origins`` (a redirect elsewhere is refused);
    ``trust_env`` takes the proxy from the environment (a setting must say so).
    """
    if follow_redirects and not policy.allowed_origins:
        raise ValueError("a guarded client follows redirects only to allowed origins")
    transport = GuardedTransport(
        policy, verify=verify, limits=limits, resolve=resolve, trust_env=trust_env
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        follow_redirects=follow_redirects,
        trust_env=False,
        headers=headers,
    )


async def checked_socket(
    policy: EgressPolicy,
    host: str,
    port: int,
    *,
    connect_seconds: float,
    resolve: Resolver = system_resolve,
) -> socket.socket:
    """A TCP connection to ``host``, made to an address the policy allows (for clients
    that are not HTTP, such as SMTP): every address the name resolves to is checked
    first, as for HTTP; EgressRefused when one is not allowed, OSError when none
    answers."""
    literal = parse_ip_literal(host)
    addresses = [literal] if literal is not None else await resolve(host, port)
    if not addresses:
        raise OSError(f"{host!r} resolves to no address")
    for address in addresses:
        reason = policy.check_address(address)
        if reason is not None:
            raise EgressRefused(f"host {host!r} resolves to a {reason} address; not connecting")
    loop = asyncio.get_running_loop()
    failure: OSError = OSError(f"cannot connect to {host!r}")
    for address in dict.fromkeys(addresses):
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (str(address), port)), connect_seconds)
        except OSError as exc:  # TimeoutError too
            sock.close()
            failure = exc
            continue
        return sock
    raise failure
