"""Inbound email: the relay's SPF/DKIM/DMARC results decide; threads belong to senders."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.channels.email import inbound as email
from pipeline.channels.email.authentication import aligned, judge, parse_header
from pipeline.errors import InboundRejected

GMAIL_STYLE = (
    "mx.google.com;\r\n       dkim=pass header.i=@example.org header.s=s1 header.b=AbC;\r\n"
    "       spf=pass (google.com: domain of ann@example.org designates 1.2.3.4 as permitted "
    "sender) smtp.mailfrom=ann@example.org;\r\n"
    "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.org"
)


def test_parse_header_reads_authserv_id_methods_and_properties() -> None:
    authserv, results = parse_header(GMAIL_STYLE)
    assert authserv == "mx.google.com"
    assert [(r.method, r.result) for r in results] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert results[0].properties["header.i"] == "@example.org"
    assert results[1].properties["smtp.mailfrom"] == "ann@example.org"


def test_alignment_is_relaxed_but_not_across_domains() -> None:
    assert aligned("example.org", "example.org")
    assert aligned("mail.example.org", "example.org")
    assert aligned("example.org", "eu.example.org")
    assert not aligned("evil.org", "example.org")
    assert not aligned("notexample.org", "example.org")
    assert not aligned(None, "example.org")


@pytest.mark.parametrize(
    ("headers", "verdicts", "accepted"),
    [
        ([GMAIL_STYLE], {}, True),
        (["mx; dmarc=pass"], {}, True),
        ([], {"dmarc": "PASS"}, True),  # Amazon SES style verdicts
        (["mx; dkim=pass header.d=mail.example.org"], {}, True),
        (["mx; spf=pass smtp.mailfrom=bounce@example.org"], {}, True),
        (["mx; dkim=pass header.d=evil.org; spf=pass smtp.mailfrom=x@evil.org"], {}, False),
        (["mx; dmarc=pass header.from=evil.org"], {}, False),
        (["mx; dmarc=fail header.from=example.org; dkim=pass header.d=example.org"], {}, False),
        (["mx; spf=softfail smtp.mailfrom=ann@example.org; dkim=none"], {}, False),
        ([], {"spf": "pass", "dkim": "pass"}, False),  # no domains: nothing to align
        (["mx.example.com; none"], {}, False),
        ([], {}, False),
    ],
)
def test_judge(headers: list[str], verdicts: dict[str, str], accepted: bool) -> None:
    assert judge("example.org", headers, verdicts).accepted is accepted


def test_only_the_relays_own_authserv_id_counts_when_configured() -> None:
    forged = "attacker.example; dmarc=pass header.from=example.org"
    assert judge("example.org", [forged], {}).accepted
    assert not judge("example.org", [forged], {}, authserv_id="mx.relay.example").accepted
    own = "mx.relay.example; dmarc=pass header.from=example.org"
    assert judge("example.org", [forged, own], {}, authserv_id="MX.relay.example").accepted


def mail(**fields: Any) -> bytes:
    base = {
        "from": "Ann <ann@example.org>",
        "to": "help@example.com",
        "subject": "Card",
        "text": "my card PIN is 4242",
        "message_id": "<ann-1@example.org>",
        "authentication_results": GMAIL_STYLE,
    }
    return json.dumps({**base, **fields}).encode()


def test_unauthenticated_or_spoofed_mail_is_403_with_the_reported_results() -> None:
    for fields in (
        {"authentication_results": []},
        {"from": "Ann <ann@bank.example>"},  # example.org's results do not vouch for it
    ):
        with pytest.raises(InboundRejected) as info:
            email.parse(mail(**fields), "t")
        assert info.value.status == 403
        assert "not authenticated" in info.value.reason
    trusted = email.parse(mail(authentication_results=[]), "t", require_authentication=False)
    assert len(trusted.events) == 1


def test_a_stranger_quoting_a_message_id_starts_a_new_conversation() -> None:
    [original] = email.parse(mail(), "t").events
    [reply] = email.parse(
        mail(message_id="<ann-2@example.org>", references=["<ann-1@example.org>"]), "t"
    ).events
    stranger_auth = "mx; dmarc=pass header.from=evil.org"
    [stranger] = email.parse(
        mail(
            **{"from": "Eve <eve@evil.org>"},
            message_id="<eve-1@evil.org>",
            references=["<ann-1@example.org>"],
            in_reply_to="<ann-1@example.org>",
            authentication_results=stranger_auth,
        ),
        "t",
    ).events
    [other_tenant] = email.parse(
        mail(message_id="<ann-3@example.org>", in_reply_to="<ann-1@example.org>"), "t2"
    ).events
    assert reply.conversation_id == original.conversation_id
    assert stranger.conversation_id != original.conversation_id
    assert other_tenant.conversation_id != original.conversation_id
    # The address is compared case-insensitively: the same person, the same thread.
    [shouting] = email.parse(
        mail(
            **{"from": "ANN@EXAMPLE.ORG"},
            message_id="<ann-4@example.org>",
            in_reply_to="<ann-1@example.org>",
        ),
        "t",
    ).events
    assert shouting.conversation_id == original.conversation_id
