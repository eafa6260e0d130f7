"""Sessions that end: a signed-out session is refused, sign-outs are recorded for the other
replicas, a removed operator's cookie lets no one in, and sign-ins are limited before any
password is checked."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from pipeline.config import Settings, bundled_dir
from pipeline.config.sections import ConsoleSettings
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.memory_transport import MemoryBroker, MemoryProducer
from pipeline.runtime.publisher import Publisher
from pipeline.services.console import create_app
from pipeline.services.console.auth import Operators
from pipeline.services.console.passwords import hash_password, scrypt_hash, verify_password
from pipeline.services.console.sessions import (
    SESSION_COOKIE,
    EndedSessions,
    Sessions,
    ended_record,
    read_ended_record,
)
from pipeline.services.console.signin_limits import SigninLimits
from pipeline.services.console.site import Console

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
PASSWORD = "a long enough password"
CHEAP = {"time_cost": 1, "memory_cost": 1024}
HTML = {"Accept": "text/html"}


def test_new_hashes_are_argon2id_and_old_scrypt_ones_still_verify() -> None:
    stored = hash_password(PASSWORD, **CHEAP)
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,")
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "!", stored)
    assert hash_password(PASSWORD, **CHEAP) != stored, "a fresh salt each time"
    assert verify_password(PASSWORD, scrypt_hash(PASSWORD, n=2**10))
    for broken in ("$argon2id$v=19$nonsense", stored[:-5], "$argon2xx$"):
        assert not verify_password(PASSWORD, broken)


def test_an_ended_session_and_a_cookie_without_a_session_id_are_refused() -> None:
    sessions = Sessions("key", max_age=60)
    session, cookie = sessions.new("ada")
    other, other_cookie = sessions.new("ada")
    assert session.sid and session.sid != other.sid
    assert sessions.read(cookie) == session
    sessions.ended.end(session.sid, time.time() + 60)
    assert sessions.read(cookie) is None
    assert sessions.read(other_cookie) == other, "only the session signed out ends"
    from itsdangerous import URLSafeTimedSerializer

    old = URLSafeTimedSerializer("key", salt="pipeline-console-session").dumps(
        {"op": "ada", "csrf": "c"}
    )
    assert sessions.read(old) is None, "signed before sessions could end: sign in again"


def test_a_sign_out_record_says_when_the_cookie_expires_anyway() -> None:
    sessions = Sessions("key", max_age=600)
    session, _ = sessions.new("ada")
    record = ended_record(session, 600)
    assert json.loads(record)["operator"] == "ada"
    assert abs(read_ended_record(record) - (session.issued_at + 600)) < 1
    with pytest.raises(ValueError):
        read_ended_record(b'{"operator": "ada"}')
    ended = EndedSessions()
    ended.end("gone", time.time() - 1)
    ended.end("kept", time.time() + 60)
    ended.forget_expired()
    assert "gone" not in ended and "kept" in ended and len(ended) == 1


def test_an_operator_removed_from_the_file_is_gone_at_the_next_reload(tmp_path: Path) -> None:
    secret = tmp_path / "operators.json"
    secret.write_text(json.dumps({"ada": {"token": "a"}, "bob": {"token": "b", "role": "viewer"}}))
    operators = Operators.from_settings(
        Settings(console={"operators": {"cy": {"token": "c"}}, "operators_file": str(secret)})
    )
    assert operators.access("bob") is not None and operators.access("cy") is not None
    assert not operators.reload(), "unchanged"
    secret.write_text(json.dumps({"ada": {"token": "a", "tenants": ["t1"], "role": "agent"}}))
    assert operators.reload()
    assert operators.access("bob") is None
    assert operators.operator_for_token("b") is None
    ada = operators.access("ada")
    assert ada is not None and (ada.role, ada.tenants) == ("agent", frozenset({"t1"}))
    assert operators.access("cy") is not None, "the settings' operators stay"
    secret.write_text("{not json")
    assert not operators.reload(), "a broken file keeps the operators as they were"
    assert operators.access("ada") is not None


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Console, MemoryBroker]]:
    settings = Settings(
        metrics_port=0,
        console={
            "operators": {
                "ada": {"password_hash": hash_password(PASSWORD, **CHEAP)},
                "bob": {"password_hash": scrypt_hash(PASSWORD, n=2**10)},
            },
            "session_secret": "test-session-secret",
            "cookie_secure": False,
            "signin_rate_per_operator": "5/second",
            "signin_rate_per_address": "12/second",
        },
    )
    broker = MemoryBroker()
    publisher = Publisher(
        settings, MemoryProducer(broker, asyncio.get_running_loop()), SERDE, "console"
    )
    app = create_app(settings, registry=CollectorRegistry(), publisher=publisher)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
        yield http, app.state.console, broker


async def signin(http: httpx.AsyncClient, operator: str, password: str) -> httpx.Response:
    return await http.post("/signin", data={"operator": operator, "password": password})


async def test_signing_out_ends_the_session_and_records_it_for_every_replica(
    console: tuple[httpx.AsyncClient, Console, MemoryBroker],
) -> None:
    http, app_console, broker = console
    assert (await signin(http, "bob", PASSWORD)).status_code == 303, "an scrypt hash still works"
    cookie = http.cookies[SESSION_COOKIE]
    session = app_console.sessions.read(cookie)
    assert session is not None
    page = await http.get("/inbox")
    assert page.status_code == 200
    out = await http.post("/signout", headers={"X-CSRF-Token": session.csrf})
    assert out.status_code == 303 and out.headers["location"] == "/signin"
    (record,) = broker.records("console_sessions")
    assert record.key() == session.sid.encode()
    assert json.loads(record.value() or b"")["operator"] == "bob"
    http.cookies.set(SESSION_COOKIE, cookie)  # the old cookie, kept by someone
    again = await http.get("/inbox", headers=HTML)
    assert again.status_code == 303 and again.headers["location"].startswith("/signin")
    assert (await http.get("/inbox")).status_code == 401


async def test_wrong_sign_ins_past_the_rate_are_429_and_check_no_password(
    console: tuple[httpx.AsyncClient, Console, MemoryBroker],
) -> None:
    http, app_console, _ = console
    checked: list[str] = []
    real = app_console.operators.verify

    def counting(password: str, stored: str) -> bool:
        checked.append(password)
        return real(password, stored)

    app_console.operators.verify = counting
    answers = [await signin(http, "ada", f"guess {n}") for n in range(100)]
    statuses = [a.status_code for a in answers]
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) <= {401, 429} and statuses.count(429) >= 90
    assert len(checked) == statuses.count(401), "no hash work past the limit"
    limited = next(a for a in answers if a.status_code == 429)
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    assert "too many sign-in attempts for this operator" in limited.text
    assert (await signin(http, "ada", PASSWORD)).status_code == 429, "even the right one waits"
    await asyncio.sleep(1.1)
    assert (await signin(http, "ada", PASSWORD)).status_code == 303, "after the window"
    metric = app_console.metrics.signins.labels("limited")._value.get()
    assert metric == statuses.count(429) + 1


async def test_sign_ins_from_one_address_are_limited_whatever_the_operator(
    console: tuple[httpx.AsyncClient, Console, MemoryBroker],
) -> None:
    http, app_console, _ = console
    app_console.signin_limits = SigninLimits(
        ConsoleSettings(signin_rate_per_address="3/minute", signin_rate_per_operator="9/minute")
    )
    statuses = [(await signin(http, f"nobody-{n}", "guess")).status_code for n in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    limited = await signin(http, "nobody-0", "guess")
    assert "too many sign-in attempts for this address" in limited.text
