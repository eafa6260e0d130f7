"""Retry-After parsing, backoff bounds, and how answers are classified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import httpx
import pytest

from pipeline.channels.outbound import (
    PermanentFailure,
    Retryable,
    classify_status,
    is_retryable_status,
    transport_failure,
)
from pipeline.retry import RetryPolicy, parse_retry_after

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Wed, 01 Jan 2025 12:00:30 GMT", 30.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),  # in the past
        (None, None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Wed, 01 Jan 2025 12:00:30", None),  # no zone: not an HTTP date
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW.timestamp()) == seconds


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 409, 410, 413, 422])
def test_statuses_a_retry_cannot_fix(status: int) -> None:
    assert not is_retryable_status(status)


def answer(status: int, headers: dict[str, str] | None = None, text: str = "") -> httpx.Response:
    return httpx.Response(status, headers=headers, text=text)


def test_classify_status() -> None:
    assert classify_status(answer(200)) is None
    assert classify_status(answer(202)) is None
    assert classify_status(answer(429, {"Retry-After": "4"}, "later")) == Retryable(
        "HTTP 429: later", 429, 4.0
    )
    assert classify_status(answer(503)) == Retryable("HTTP 503: Service Unavailable", 503)
    assert classify_status(answer(400, text="no\nchannel")) == PermanentFailure(
        "HTTP 400: no channel", 400
    )
    assert classify_status(answer(302)) == PermanentFailure("HTTP 302: Found", 302)
    long = classify_status(answer(500, text="x" * 5000))
    assert long is not None and len(long.error) < 300


def test_transport_failures_are_retryable_and_uncertain_unless_never_connected() -> None:
    request = httpx.Request("POST", "http://x")
    assert transport_failure(httpx.ReadTimeout("read timed out", request=request)) == Retryable(
        "timeout: ReadTimeout: read timed out", uncertain=True
    )
    refused = transport_failure(httpx.ConnectError("refused", request=request))
    assert refused.error == "connection error: ConnectError: refused"
    assert not refused.uncertain, "no connection: the request cannot have arrived"


def mapped(exc: httpx.HTTPError, cause: BaseException) -> httpx.HTTPError:
    exc.__cause__ = cause
    return exc


def test_aiohttp_lost_connections_are_uncertain_and_its_connector_errors_are_not() -> None:
    # aiohttp's transport maps every lost connection onto ConnectTimeout.
    request = httpx.Request("POST", "http://x")
    key = aiohttp.client_reqrep.ConnectionKey("x", 80, False, True, None, None, None)
    connector = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    disconnected = aiohttp.ServerDisconnectedError()
    never = transport_failure(mapped(httpx.ConnectTimeout("x", request=request), connector))
    lost = transport_failure(mapped(httpx.ConnectTimeout("x", request=request), disconnected))
    assert (never.uncertain, lost.uncertain) == (False, True)


def policy(
    max_attempts: int = 5,
    initial_seconds: float = 0.5,
    max_seconds: float = 30.0,
    retry_after_max_seconds: float = 120.0,
) -> RetryPolicy:
    return RetryPolicy(max_attempts, initial_seconds, max_seconds, retry_after_max_seconds)


def test_backoff_doubles_within_jitter_bounds_and_is_capped() -> None:
    p = policy()
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 30.0), (30, 30.0)]:
        delays = [p.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays))
        assert max(delays) - min(delays) > 0, "no jitter"


def test_retry_after_is_a_floor_capped_by_its_maximum() -> None:
    p = policy(retry_after_max_seconds=60.0)
    assert all(p.delay(1, 5.0) == 5.0 for _ in range(50))  # backoff 0.25..0.5 < 5
    assert all(1.0 <= p.delay(3, 0.1) <= 2.0 for _ in range(50))  # backoff wins
    assert p.delay(1, 3600.0) == 60.0
