"""Email replies over SMTP (aiosmtplib), threaded under the message they answer.

The SMTP server is connected to through the egress policy (:func:`pipeline.egress.checked_socket`):
its address must be public or in ``smtp_allowed_networks`` (this machine by default), or
the reply is refused without a connection.

``In-Reply-To`` is the Message-ID being answered (``ResponseReady.in_reply_to``) and
``References`` the thread: its root (``reply_to.thread_id``) then that message. The
reply's own Message-ID derives from the response event id, so a repeat after a crash
carries the same Message-ID and mail systems recognise it.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib

from pipeline.channels.outbound import Outcome, PermanentFailure, Retryable, Sent
from pipeline.config.sections import DeliverySettings
from pipeline.egress import EgressPolicy, checked_socket
from pipeline.errors import EgressRefused
from pipeline.events.model import Event

_UNSAFE = re.compile(r"[\s<>]+")


class EmailSender:
    """Sends a response to the e-mail address in ``reply_to.address``."""

    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self.domain = parseaddr(settings.email_from)[1].rpartition("@")[2] or "localhost"
        self.policy = EgressPolicy.of(True, settings.smtp_allowed_networks)

    def message(self, response: Event) -> EmailMessage:
        """The reply as an e-mail, headers and all."""
        address = response["reply_to"]
        message = EmailMessage()
        message["From"] = self.settings.email_from
        message["To"] = address["address"]
        message["Subject"] = self.subject(response)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = message_id(str(response.id), self.domain)
        parent = _msg_id(response.get("in_reply_to"))
        root = _msg_id(address.get("thread_id"))
        if parent:
            message["In-Reply-To"] = parent
        references = [r for r in dict.fromkeys((root, parent)) if r]
        if references:
            message["References"] = " ".join(references)
        message["Auto-Submitted"] = "auto-replied"
        message.set_content(response["text"])
        return message

    def subject(self, response: Event) -> str:
        """``Re: <subject>`` when the response knows its subject, else the configured one."""
        original = (response.get("subject") or "").strip()
        if not original:
            return self.settings.email_subject
        return original if original.lower().startswith("re:") else f"Re: {original}"

    async def send(self, response: Event) -> Outcome:
        recipient = response["reply_to"]["address"]
        if "@" not in parseaddr(recipient)[1]:
            return PermanentFailure(f"{recipient!r} is not an e-mail address")
        message = self.message(response)
        s = self.settings
        try:
            sock = await checked_socket(
                self.policy, s.smtp_host, s.smtp_port, connect_seconds=s.timeout_seconds
            )
        except EgressRefused as exc:
            return PermanentFailure(f"SMTP: {exc}")
        except OSError as exc:  # no connection: nothing was sent
            return Retryable(f"SMTP: {type(exc).__name__}: {exc}")
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                sock=sock,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls,
                timeout=s.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            return _by_code(min(codes, default=550), f"recipients refused: {exc}")
        except aiosmtplib.SMTPResponseException as exc:
            return _by_code(exc.code, f"SMTP {exc.code}: {exc.message}")
        except (aiosmtplib.SMTPNotSupported, ValueError) as exc:
            return PermanentFailure(f"SMTP: {type(exc).__name__}: {exc}")
        except (aiosmtplib.SMTPException, OSError) as exc:  # timeouts, refused connections
            # No answer to the message: the server may have taken it all the same.
            return Retryable(f"SMTP: {type(exc).__name__}: {exc}", uncertain=True)
        return Sent(str(message["Message-ID"]))


def message_id(response_id: str, domain: str) -> str:
    """The reply's Message-ID: the same for every attempt at one response."""
    return f"<{response_id}@{domain}>"


def _msg_id(value: str | None) -> str | None:
    """A Message-ID in angle brackets, without anything that could break the header."""
    if not value:
        return None
    bare = _UNSAFE.sub("", value)
    return f"<{bare}>" if bare else None


def _by_code(code: int, error: str) -> Outcome:
    """SMTP 4xx is transient by definition (RFC 5321 §4.2.1); 5xx is not."""
    if 400 <= code <= 499:
        return Retryable(error)
    return PermanentFailure(error)
