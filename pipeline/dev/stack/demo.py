"""``pipeline demo``: scripted conversations through the live pipeline, on one machine.

Web chat, Slack, WhatsApp, email (with a threaded reply), a signed ticket webhook and a
follow-up timer go in through the gateway, all of tenant ``demo`` (the web token's, the
mail relay's and the webhook source's); the channel stand-ins receive what the users
would see; each conversation's timeline is printed from Kafka.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from pipeline.channels.webhook.inbound import signature_headers
from pipeline.config import bundled_dir
from pipeline.dev.kafka import free_port
from pipeline.dev.stack.local import LocalStack, development_env
from pipeline.dev.stack.receiver import Delivered, Receivers
from pipeline.events.wire import make_serde
from pipeline.timeline import conversation_timeline, render

WEB_TOKEN = "demo-web-token"
EMAIL_TOKEN = "demo-email-token"
SLACK_SECRET = "demo-slack-signing-secret"
WHATSAPP_SECRET = "demo-whatsapp-app-secret"
WEBHOOK_SECRET = "demo-helpdesk-secret"
CALLBACK_SECRET = "demo-callback-signing-secret"
TENANT = "demo"
WEB_CONVERSATION = f"web:{TENANT}:demo-web-ada"
# What the relay's receiving server reports for the demo's mail (RFC 8601).
MAIL_AUTHENTICATION = (
    "mx.demo.example; spf=pass smtp.mailfrom=barbara@example.org; "
    "dkim=pass header.d=example.org; dmarc=pass header.from=example.org"
)
FOLLOW_UP_SECONDS = 4


def demo_env(receivers: Receivers, gateway_port: int) -> dict[str, str]:
    rules = _example("webhooks", "rules.yaml")
    knowledge = _example("knowledge", "knowledge.yaml")
    env = {
        # Local receivers on 127.0.0.1 over http, verifying the demo's callback secret.
        **development_env(receivers.callback_secret),
        "PIPELINE_GATEWAY__PORT": str(gateway_port),
        "PIPELINE_GATEWAY__HOST": "127.0.0.1",
        "PIPELINE_CONSOLE__PORT": str(free_port()),
        "PIPELINE_CONSOLE__HOST": "127.0.0.1",
        "PIPELINE_GATEWAY__WEB_TOKENS": json.dumps({TENANT: WEB_TOKEN}),
        "PIPELINE_GATEWAY__EMAIL_RELAYS": json.dumps(
            {"relay": {"token": EMAIL_TOKEN, "tenant": TENANT, "authserv_id": "mx.demo.example"}}
        ),
        "PIPELINE_GATEWAY__SLACK_SIGNING_SECRET": SLACK_SECRET,
        "PIPELINE_GATEWAY__WHATSAPP_APP_SECRET": WHATSAPP_SECRET,
        "PIPELINE_GATEWAY__WHATSAPP_VERIFY_TOKEN": "demo-verify",
        "PIPELINE_GATEWAY__SLACK_TENANT": TENANT,
        "PIPELINE_GATEWAY__WHATSAPP_TENANT": TENANT,
        "PIPELINE_GATEWAY__WEBHOOK_SOURCES": json.dumps(
            {
                "helpdesk": {
                    "secret": WEBHOOK_SECRET,
                    "tenants": [TENANT],
                    "conversation_prefixes": [f"web:{TENANT}:"],
                }
            }
        ),
        "PIPELINE_DELIVERY__SLACK_BASE_URL": f"{receivers.base_url}/slack/api",
        "PIPELINE_DELIVERY__SLACK_BOT_TOKEN": "xoxb-demo",
        "PIPELINE_DELIVERY__WHATSAPP_BASE_URL": f"{receivers.base_url}/whatsapp",
        "PIPELINE_DELIVERY__WHATSAPP_PHONE_NUMBER_ID": "15550001111",
        "PIPELINE_DELIVERY__WHATSAPP_TOKEN": "demo-whatsapp-token",
        # The stand-ins of Slack and WhatsApp listen on this machine.
        "PIPELINE_DELIVERY__API_ALLOWED_NETWORKS": json.dumps(["127.0.0.0/8"]),
        "PIPELINE_DELIVERY__SMTP_HOST": "127.0.0.1",
        "PIPELINE_DELIVERY__SMTP_PORT": str(receivers.smtp_port),
        "PIPELINE_AGENT__FOLLOW_UP_SECONDS": str(FOLLOW_UP_SECONDS),
    }
    if rules is not None:
        env["PIPELINE_WEBHOOKS__RULES_FILE"] = str(rules)
    if knowledge is not None:
        env["PIPELINE_TOOLS__KNOWLEDGE_FILE"] = str(knowledge)
    return env


def _example(folder: str, name: str) -> Path | None:
    for base in (bundled_dir(folder), bundled_dir("deploy") / folder):
        if (base / name).is_file():
            return base / name
    return None


@dataclass
class Expectation:
    """A reply the demo waits for: on a channel, to an address, matching a predicate."""

    what: str
    channel: str
    matches: Callable[[Delivered], bool]
    met_by: Delivered | None = field(default=None)


class Script:
    """The scripted conversations, sent over real HTTP to the gateway."""

    def __init__(self, gateway: str, receivers: Receivers) -> None:
        self.gateway = gateway
        self.receivers = receivers
        self.client = httpx.Client(base_url=gateway, timeout=15.0)
        self.conversations: dict[str, str] = {}
        self.expectations: list[Expectation] = []

    def _post(self, label: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        answer = self.client.post(path, content=body, headers=headers)
        if answer.status_code >= 300:
            raise click.ClickException(
                f"{label}: gateway answered {answer.status_code}: {answer.text}"
            )
        events = answer.json().get("events", [])
        if events:
            self.conversations.setdefault(label, events[0]["conversation_id"])
        click.echo(f"  -> {label}: {answer.status_code} {answer.json().get('status')}")

    def web(self) -> None:
        body = {
            "conversation_id": "demo-web-ada",
            "user_id": "ada",
            "text": "what is 12*7?",
            "callback_url": f"{self.receivers.base_url}/web/callback",
        }
        self._post(
            "web chat",
            "/v1/web/messages",
            json.dumps(body).encode(),
            {"Authorization": f"Bearer {WEB_TOKEN}", "Content-Type": "application/json"},
        )
        self.expectations.append(Expectation("web answer with 84", "web", lambda d: "84" in d.text))

    def slack(self) -> None:
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": "T0DEMO",
                "event_id": "Ev0DEMO1",
                "event": {
                    "type": "message",
                    "channel": "C0DEMO",
                    "user": "U0GRACE",
                    "text": "hello!",
                    "ts": f"{time.time():.6f}",
                },
            }
        ).encode()
        stamp = str(int(time.time()))
        digest = hmac.new(
            SLACK_SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
        self._post(
            "slack",
            "/v1/slack/events",
            body,
            {
                "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": f"v0={digest}",
                "Content-Type": "application/json",
            },
        )
        self.expectations.append(Expectation("slack reply", "slack", lambda d: d.to == "C0DEMO"))

    def whatsapp(self) -> None:
        body = json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "WABA1",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {
                                        "display_phone_number": "15550001111",
                                        "phone_number_id": "15550001111",
                                    },
                                    "contacts": [
                                        {"profile": {"name": "Linus"}, "wa_id": "4915112345678"}
                                    ],
                                    "messages": [
                                        {
                                            "from": "4915112345678",
                                            "id": "wamid.DEMO1",
                                            "timestamp": str(int(time.time())),
                                            "type": "text",
                                            "text": {"body": "what is 6*7?"},
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            }
        ).encode()
        digest = hmac.new(WHATSAPP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        self._post(
            "whatsapp",
            "/v1/whatsapp/webhook",
            body,
            {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"},
        )
        self.expectations.append(
            Expectation("whatsapp answer with 42", "whatsapp", lambda d: "42" in d.text)
        )

    def email(self, reply: bool = False) -> None:
        body: dict[str, Any] = {
            "from": "Barbara <barbara@example.org>",
            "to": "help@example.com",
            "subject": "Question",
            "text": "hi, what is 100-58?",
            "message_id": "<demo-1@example.org>",
            "authentication_results": MAIL_AUTHENTICATION,
        }
        label = "email"
        if reply:
            body.update(
                text="and what is 7*6?",
                message_id="<demo-2@example.org>",
                in_reply_to="<demo-1@example.org>",
                subject="Re: Question",
            )
            label = "email reply"
        self._post(
            label,
            "/v1/email/inbound",
            json.dumps(body).encode(),
            {"Authorization": f"Bearer {EMAIL_TOKEN}", "Content-Type": "application/json"},
        )
        self.expectations.append(
            Expectation(f"{label} answered by email", "email", lambda d: "42" in d.text)
        )

    def webhook(self) -> None:
        body = json.dumps(
            {
                "event": "ticket.resolved",
                "conversation_id": WEB_CONVERSATION,
                "id": "delivery-1",
                "ticket_id": "T-1001",
            }
        ).encode()
        self._post(
            "ticket webhook",
            "/v1/webhooks/helpdesk",
            body,
            {
                **signature_headers(WEBHOOK_SECRET, body, time.time()),
                "Content-Type": "application/json",
            },
        )
        self.expectations.append(
            Expectation("proactive ticket message on web", "web", lambda d: "resolved" in d.text)
        )

    def wait(self, timeout: float) -> bool:
        """Match received messages to expectations, each message used once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            used: set[int] = set()
            items = self.receivers.inbox.items()
            for expectation in self.expectations:
                expectation.met_by = None
                for i, item in enumerate(items):
                    if (
                        i not in used
                        and item.channel == expectation.channel
                        and expectation.matches(item)
                    ):
                        expectation.met_by = item
                        used.add(i)
                        break
            if all(e.met_by for e in self.expectations):
                return True
            time.sleep(0.5)
        return False


def run_demo(*, kafka_port: int, gateway_port: int, log_dir: Path, timeout: float) -> int:
    receivers = Receivers(free_port(), free_port(), CALLBACK_SECRET)
    receivers.start()
    try:
        env = demo_env(receivers, gateway_port)
        click.echo("starting Kafka (if needed), topics and services ...")
        with LocalStack(env, kafka_port=kafka_port, log_dir=log_dir) as stack:
            script = Script(f"http://127.0.0.1:{gateway_port}", receivers)
            click.echo("sending the scripted conversations:")
            script.web()
            script.slack()
            script.whatsapp()
            script.email()
            if not script.wait(timeout):
                return _report(stack, script, receivers, ok=False)
            script.email(reply=True)
            script.webhook()
            script.expectations.append(
                Expectation("follow-up timer on web", "web", lambda d: "anything else" in d.text)
            )
            ok = script.wait(timeout + FOLLOW_UP_SECONDS)
            return _report(stack, script, receivers, ok=ok)
    finally:
        receivers.stop()


def _report(stack: LocalStack, script: Script, receivers: Receivers, *, ok: bool) -> int:
    settings = stack.settings()
    serde = make_serde(settings, register=False)
    for label, conversation in script.conversations.items():
        click.echo(f"\n=== {label}: conversation {conversation}")
        click.echo(render(conversation_timeline(settings, serde, conversation)))
    click.echo("\n=== what the users received")
    for item in receivers.inbox.items():
        click.echo(f"  [{item.channel:<8}] to {item.to}: {item.text}")
    click.echo("\n=== expectations")
    for expectation in script.expectations:
        mark = "ok  " if expectation.met_by else "MISS"
        click.echo(f"  {mark} {expectation.what}")
    return 0 if ok else 1
