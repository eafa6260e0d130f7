"""Outbound URLs that cannot reach inside: the checks behind every client-supplied URL.

A callback URL comes from a client, so sending to it must not let that client reach
the pipeline's own network (server-side request forgery). :class:`EgressPolicy` says
what may be reached; :func:`guarded_client` is an HTTP client that enforces it:

- the scheme is https (http only when the policy allows it, for development);
- the host is resolved, and every address it resolves to must be public: loopback,
  private, shared (CGNAT), link-local (cloud metadata at 169.254.169.254), reserved,
  multicast and unspecified addresses are refused, also inside IPv4-mapped, 6to4,
  Teredo and NAT64 IPv6 forms, unless the address is in one of the policy's
  ``allowed_networks``;
- the connection goes to the address that was checked (the name is not looked up a
  second time, so a DNS answer that changes in between cannot redirect it), while the
  Host header and TLS server name stay those of the URL;
- no redirects are followed and no proxy from the environment is used.

A refusal raises :class:`EgressRefused` before any connection is made.
:func:`obviously_internal` is the cheap syntactic part, for where a URL comes in.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx
from pydantic import AfterValidator, AnyHttpUrl

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
        return f"callback host {host!r} is an IP address in a non-standard notation"
    reason = blocked_reason(address)
    if reason in ("link-local", "multicast", "unspecified", "reserved"):
        return f"callback host {host!r} is a {reason} address"
    return None


def _not_obviously_internal(url: AnyHttpUrl) -> AnyHttpUrl:
    reason = obviously_internal(str(url))
    if reason is not None:
        raise ValueError(reason)
    return url


CallbackUrl = Annotated[AnyHttpUrl, AfterValidator(_not_obviously_internal)]
"""An http(s) URL field that refuses, where it enters, what :func:`obviously_internal` does."""


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """What an outbound URL may reach.

    ``allow_http`` and ``allowed_networks`` loosen the defaults for development and
    tests (local receivers on 127.0.0.1 over http); production leaves both off.
    """

    allow_http: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, allow_http: bool, allowed_networks: Iterable[IPNetwork | str]) -> EgressPolicy:
        return cls(allow_http, tuple(ipaddress.ip_network(n) for n in allowed_networks))

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
                return f"callback host {host!r} is a {reason} address"
        return None


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, lower-cased, with the scheme's default port."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses the system resolver gives for ``host``, in its order."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the name itself, checks every address, and connects to a checked one."""

    def __init__(self, policy: EgressPolicy, resolve: Resolver) -> None:
        self.policy = policy
        self.resolve = resolve
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from exc
        for address in addresses:
            reason = self.policy.check_address(address)
            if reason is not None:
                raise EgressRefused(
                    f"callback host {host!r} resolves to a {reason} address; not connecting"
                )
        return await self.inner.connect_tcp(
            str(addresses[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        literal = parse_ip_literal(host)
        if literal is not None:
            return [literal]
        addresses = await self.resolve(host, port)
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} resolves to no address")
        return list(dict.fromkeys(addresses))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are not reachable through an outbound URL")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose every connection is checked."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        resolve: Resolver = system_resolve,
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        # httpx builds its httpcore pool without a network backend parameter; this is
        # the same pool with the guarded backend (handle_async_request uses _pool).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy, resolve),
        )


def guarded_client(
    policy: EgressPolicy,
    *,
    timeout: float,
    verify: ssl.SSLContext | bool = True,
    headers: dict[str, str] | None = None,
    resolve: Resolver = system_resolve,
) -> httpx.AsyncClient:
    """An HTTP client for client-supplied URLs: checked addresses, no redirects, no proxy.

    ``verify`` is the TLS trust (an ``ssl.SSLContext`` for a private CA in tests);
    ``resolve`` looks names up (the system resolver; tests give their own).
    """
    return httpx.AsyncClient(
        transport=GuardedTransport(policy, verify=verify, resolve=resolve),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        headers=headers,
    )
