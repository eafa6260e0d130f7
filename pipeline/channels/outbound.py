"""What one send attempt came to, and how HTTP answers and errors map onto it.

Every outbound channel adapter returns one of three outcomes::

    Sent(provider_message_id)            the channel took the message
    Retryable(error, status, retry_after)  try again later: 429, 5xx, timeouts, lost connections
    PermanentFailure(error, status)      a retry cannot help: other 4xx, a refusal, bad config

A ``Retryable`` with ``uncertain`` set had no answer (a timeout, a lost connection): the
request may have arrived, so the next attempt is resolved the way the channel resolves an
uncertain send (:mod:`pipeline.services.delivery.uncertain`). An adapter that can look up
whether a message of its own already arrived implements :class:`Lookup`.

Adapters catch transport errors themselves; an exception escaping an adapter is a bug,
which the runtime retries and then dead-letters as a handler failure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import aiohttp
import httpx

from pipeline.errors import EgressRefused
from pipeline.events.model import Event
from pipeline.retry import parse_retry_after

IDEMPOTENCY_KEY = "Idempotency-Key"


@dataclass(frozen=True, slots=True)
class Sent:
    """The channel accepted the message; its id for it, when it gave one."""

    provider_message_id: str | None = None
    http_status: int | None = None


@dataclass(frozen=True, slots=True)
class Retryable:
    """A failure worth retrying; ``retry_after`` is the wait the channel asked for, in s;
    ``uncertain``: no answer came, the message may have arrived all the same."""

    error: str
    http_status: int | None = None
    retry_after: float | None = None
    uncertain: bool = False


@dataclass(frozen=True, slots=True)
class PermanentFailure:
    """A failure no retry can fix (the request itself is wrong, or refused)."""

    error: str
    http_status: int | None = None


Outcome = Sent | Retryable | PermanentFailure


class Sender(Protocol):
    """An outbound channel adapter: sends one ResponseReady event to its channel."""

    async def send(self, response: Event) -> Outcome: ...


@runtime_checkable
class Lookup(Protocol):
    """An adapter that can tell whether a response it may have sent arrived.

    ``find_sent`` answers ``Sent`` (found: it arrived, with the channel's id for it), None
    (not found since ``since_ms``, the attempt's time: send it), or a failure of the
    lookup itself (Retryable: look again later; PermanentFailure: it cannot be told).
    """

    async def find_sent(
        self, response: Event, since_ms: int
    ) -> Sent | Retryable | PermanentFailure | None: ...


def is_retryable_status(status: int) -> bool:
    """429, 408 and every 5xx are worth another attempt; other statuses are not."""
    return status in (408, 429) or 500 <= status <= 599


def classify_status(response: httpx.Response) -> Retryable | PermanentFailure | None:
    """None for a 2xx answer; otherwise what the status means for a retry."""
    status = response.status_code
    if 200 <= status <= 299:
        return None
    error = f"HTTP {status}: {_snippet(response)}"
    if is_retryable_status(status):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return Retryable(error, status, retry_after)
    return PermanentFailure(error, status)


def transport_failure(exc: httpx.HTTPError) -> Retryable:
    """Timeouts and connection errors: retry. Unless the connection was never made, the
    request may have arrived all the same (``uncertain``)."""
    cause = exc.__cause__
    uncertain = not never_connected(exc)
    if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
        # The socket's own error (aiohttp's transport maps a refused connection onto
        # httpx's ConnectTimeout): name what happened, not the mapped class.
        return Retryable(
            f"connection error: {type(cause).__name__}: {exc}".rstrip(": "), uncertain=uncertain
        )
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
    return Retryable(f"{kind}: {type(exc).__name__}: {exc}".rstrip(": "), uncertain=uncertain)


def never_connected(exc: httpx.HTTPError) -> bool:
    """True when the request cannot have left: no connection was made."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        # aiohttp's transport maps every lost connection onto ConnectTimeout: only its
        # connector's error means no connection.
        return isinstance(cause, aiohttp.ClientConnectorError)
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> httpx.Response | Retryable | PermanentFailure:
    """POST ``body`` as JSON; a transport failure comes back as a Retryable outcome, a
    destination the egress policy refuses as a PermanentFailure."""
    try:
        return await client.post(url, json=body, headers=headers)
    except EgressRefused as exc:
        return PermanentFailure(str(exc))
    except httpx.HTTPError as exc:
        return transport_failure(exc)


def json_body(response: httpx.Response) -> dict[str, Any] | None:
    """The answer's JSON object, or None when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


ERROR_LIMIT = 300
PROVIDER_ID_LIMIT = 128
SNIPPET_LIMIT = 100


def sanitised(text: str, limit: int) -> str:
    """``text`` made safe to store and show: printable characters only (others become
    ``?``), whitespace runs as one space, at most ``limit`` characters (``…`` marks a cut).

    What a channel answers is hostile input: it is never stored verbatim.
    """
    cleaned = "".join(c if c.isprintable() else " " if c.isspace() else "?" for c in text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def provider_id(value: object) -> str | None:
    """A channel's id for a sent message, sanitised and bounded; None when absent."""
    if value is None or isinstance(value, dict | list):
        return None
    return sanitised(str(value), PROVIDER_ID_LIMIT) or None


def bounded(outcome: Outcome) -> Outcome:
    """``outcome`` with the text a channel supplied (its message id, an error) sanitised
    and bounded, as it may be stored in statuses, the sent store and dead letters."""
    if isinstance(outcome, Sent):
        return replace(outcome, provider_message_id=provider_id(outcome.provider_message_id))
    return replace(outcome, error=sanitised(outcome.error, ERROR_LIMIT))


def _snippet(response: httpx.Response, limit: int = SNIPPET_LIMIT) -> str:
    return sanitised(response.text[: limit * 4], limit) or response.reason_phrase
