"""The console while Kafka is unreachable, and its errors: every page still answers a
browser (never a 5xx), with a banner saying since when Kafka is unreachable and what is
stale; what needs Kafka says it cannot be done now (a refused action keeps what the
operator typed); errors are pages for browsers and JSON for API clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.events.model import utc_now
from tests.unit.services.console.routes.console_run import ConsoleRun, console_run
from tests.unit.services.console.view_events import called, event, result

PAGES = (
    "/",
    "/inbox",
    "/approvals",
    "/uncertain",
    "/cleanup",
    "/dead-letters",
    "/conversations/c1",
    "/conversations/c1/timeline",
)


@pytest.fixture
async def run() -> AsyncIterator[ConsoleRun]:
    events = [
        event("message_received", 0, channel="web", sender_id="u", text="refund order 1234"),
        called(1),
        result(2),
    ]
    async with console_run(events) as run:
        yield run


def kafka_down(run: ConsoleRun) -> None:
    run.console.readiness.unreachable_since = utc_now()


async def test_every_page_answers_a_browser_with_the_banner_while_kafka_is_down(
    run: ConsoleRun,
) -> None:
    for path in PAGES:
        page = await run.browser.get(path)
        assert page.status_code == 200, (path, page.text)
        assert 'class="banner" role="alert" hidden>' in page.text, path
        assert "Kafka unreachable" not in page.text, path
    kafka_down(run)
    for path in PAGES:
        page = await run.browser.get(path)
        assert page.status_code == 200, (path, page.status_code, page.text)
        assert page.headers["content-type"].startswith("text/html"), path
        assert "Kafka unreachable since" in page.text and "(stale)" in page.text, path
        assert '<main class="stale">' in page.text, path
    listed = await run.browser.get("/dead-letters")
    assert "Cannot read the dead letters now" in listed.text
    assert "Nothing was read before." in listed.text
    assert "refund order 1234" in (await run.browser.get("/conversations/c1")).text
    fragment = await run.browser.get("/dead-letters", headers={"X-Console-Fragment": "1"})
    assert fragment.status_code == 200 and 'id="dead-letters-problem"' in fragment.text


async def test_an_api_client_gets_503_with_retry_after_for_what_needs_kafka(
    run: ConsoleRun,
) -> None:
    kafka_down(run)
    for path in ("/dead-letters", "/conversations/c1/timeline"):
        answer = await run.http.get(path)
        assert answer.status_code == 503, path
        assert answer.headers["retry-after"] == "5"
        assert "Kafka unreachable" in answer.json()["error"]
    assert (await run.http.get("/inbox")).status_code == 200, "the view is in memory"


async def test_an_action_kafka_does_not_take_keeps_what_the_operator_typed(
    run: ConsoleRun,
) -> None:
    run.broker.hold_acknowledgements()  # Kafka does not answer
    run.console.actions.ack_timeout = 0.05
    kafka_down(run)
    typed = "We are <b>on it</b>, one moment please."
    answer = await run.form("/conversations/c1/reply", text=typed)
    assert answer.status_code == 200, "no 5xx for a browser"
    assert "not stored, try again" in answer.text and 'id="notice"' in answer.text
    assert "We are &lt;b&gt;on it&lt;/b&gt;, one moment please.</textarea>" in answer.text
    api = await run.http.post("/conversations/c1/reply", data={"text": typed})
    assert api.status_code == 503 and api.headers["retry-after"] == "5"
    assert "not stored" in api.json()["error"]


async def test_errors_are_pages_for_a_browser_and_json_for_an_api_client(
    run: ConsoleRun,
) -> None:
    for path in ("/no-such-page", "/conversations/nobody"):
        page = await run.browser.get(path)
        assert page.status_code == 404, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert 'id="error"' in page.text, path
        answer = await run.http.get(path)
        assert answer.status_code == 404 and answer.json()["error"], path
    fragment = await run.browser.get("/conversations/nobody", headers={"X-Console-Fragment": "1"})
    assert fragment.status_code == 404 and fragment.text.startswith('<p class="error" id="error">')
    asked_json = await run.browser.get("/no-such-page", headers={"Accept": "application/json"})
    assert asked_json.status_code == 404 and asked_json.json()["error"]
    refused = await run.browser.post("/conversations/c1/reply", data={"text": "hi"})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "CSRF token" in refused.text and 'id="error"' in refused.text
    wrong_method = await run.browser.delete("/inbox")
    assert wrong_method.status_code in (403, 405)
    assert wrong_method.headers["content-type"].startswith("text/html")
