"""Whether a relayed email really comes from its ``From`` domain: the relay's verdicts.

The receiving mail server checks SPF, DKIM and DMARC and reports the outcome in an
``Authentication-Results`` header (RFC 8601), which inbound relays pass on (Postmark,
Mailgun and SendGrid forward the header; Amazon SES reports ``spfVerdict``,
``dkimVerdict`` and ``dmarcVerdict``). A message is accepted when:

- DMARC passed (and, when the result names ``header.from``, for the From domain); or,
  when no DMARC result fails,
- DKIM passed with a signing domain (``header.d``, or ``header.i``'s) aligned with the
  From domain, or SPF passed for an envelope sender (``smtp.mailfrom``) aligned with it.

Aligned means relaxed alignment: the same domain, or one a subdomain of the other. A
``dmarc=fail`` refuses the message whatever else passed. With ``authserv_id`` set, only
results of that server count (a sender can write an Authentication-Results header of
its own into the message; the relay's server adds its own on top). Plain verdicts
without domains (``{"dmarc": "pass"}``) only count for DMARC, the one check that is
about the From domain by definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_COMMENT = re.compile(r"\([^()]*\)")


@dataclass(frozen=True, slots=True)
class Result:
    """One ``method=result`` of an Authentication-Results header, with its properties."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Accepted or not, and what the relay reported (for the refusal's reason)."""

    accepted: bool
    reported: str


def parse_header(value: str) -> tuple[str, list[Result]]:
    """The authserv-id and the results of one Authentication-Results header value."""
    text = value
    while True:  # comments may nest; strip the innermost until none is left
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    parts = [p.strip() for p in text.split(";")]
    authserv = parts[0].split()[0].lower() if parts and parts[0].split() else ""
    results: list[Result] = []
    for part in parts[1:]:
        tokens = part.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        properties: dict[str, str] = {}
        for token in tokens[1:]:
            name, equals, prop = token.partition("=")
            if equals:
                properties[name.lower()] = prop.strip('"').lower()
        results.append(Result(method.split("/")[0].lower(), result.lower(), properties))
    return authserv, results


def aligned(domain: str | None, from_domain: str) -> bool:
    """Relaxed alignment: the same domain, or one is a subdomain of the other."""
    if not domain:
        return False
    a, b = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _domain(value: str | None) -> str | None:
    if not value:
        return None
    return value.rpartition("@")[2] or None


def judge(
    from_domain: str,
    headers: Iterable[str],
    verdicts: Mapping[str, str],
    authserv_id: str | None = None,
) -> Verdict:
    """Whether the relay's results authenticate mail from ``from_domain``."""
    results: list[Result] = []
    for header in headers:
        authserv, found = parse_header(header)
        if authserv_id is None or authserv == authserv_id.lower():
            results.extend(found)
    results.extend(Result(m.lower(), str(r).lower()) for m, r in verdicts.items())
    reported = ", ".join(f"{r.method}={r.result}" for r in results) or "no results"
    dmarc = [r for r in results if r.method == "dmarc"]
    if any(r.result == "fail" for r in dmarc):
        return Verdict(False, reported)
    for r in dmarc:
        named = r.properties.get("header.from")
        if r.result == "pass" and (named is None or aligned(named, from_domain)):
            return Verdict(True, reported)
    for r in results:
        if r.result != "pass":
            continue
        if r.method == "dkim":
            signer = r.properties.get("header.d") or _domain(r.properties.get("header.i"))
            if aligned(signer, from_domain):
                return Verdict(True, reported)
        if r.method == "spf" and aligned(_domain(r.properties.get("smtp.mailfrom")), from_domain):
            return Verdict(True, reported)
    return Verdict(False, reported)
