"""The alert e-mail: one `EmailMessage` per notification, the same bytes every time."""

from __future__ import annotations

import email.policy
import functools
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime

import jinja2

from stockalert.adapters.mail import DEFAULT_SENDER
from stockalert.domain.model import Notification, NotificationKind, Side


class _FoldOnceHeader(BaseHeader):
    """A header that folds itself once per kind of output; shared headers (below) are folded
    for every message otherwise. Folding depends only on these three policy settings."""

    def fold(self, *, policy: email.policy.Policy) -> str:
        key = (policy.max_line_length, getattr(policy, "utf8", False), policy.linesep)
        folded: dict[tuple[int | None, bool, str], str] = vars(self).setdefault("_folded", {})
        if key not in folded:
            folded[key] = super().fold(policy=policy)
        return folded[key]


class _CachingHeaderRegistry(HeaderRegistry):
    """Parses each distinct (name, value) once: most headers of an alert repeat (sender,
    MIME headers, Auto-Submitted); parsed headers are immutable, so sharing them is safe.
    The policy checks values for line breaks before the factory is asked. The stock
    registry also builds a new class on every lookup; here each name gets one."""

    def __init__(self) -> None:
        super().__init__(base_class=_FoldOnceHeader)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one process-wide instance, never freed
    def __getitem__(self, name: str) -> type[BaseHeader]:
        return super().__getitem__(name)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one process-wide instance, never freed
    def __call__(self, name: str, value: str) -> BaseHeader:
        return super().__call__(name, value)


# Fail on any header defect instead of writing something a mail server would mangle.
POLICY = email.policy.default.clone(raise_on_defect=True, header_factory=_CachingHeaderRegistry())
# The same, for the wire: what smtplib.send_message would use, made once instead of per call.
SMTP_POLICY = POLICY.clone(linesep="\r\n")
# Fixed, so that the same notification is always the same bytes (and its Content-Type header
# is shared); build_message checks that no part contains it.
BOUNDARY = "=_stockalert-alternative_="


def message_id(notification: Notification) -> str:
    """`Message-ID` derived from the notification id (':' written as '.') and, after a '+',
    its quote's correlation id; both are fixed when the notification is raised, so a resent
    alert is the same message, and the correlation id is in the one header every mail tool
    shows and keeps."""
    local = notification.notification_id.replace(":", ".")
    if notification.correlation_id is not None:
        local = f"{local}+{notification.correlation_id}"
    return f"<{local}@stockalert.invalid>"


def subject(notification: Notification) -> str:
    """Names the ticker, HIGH or LOW, and what happened."""
    direction = "above" if notification.side is Side.HIGH else "below"
    reminder = " (reminder)" if notification.kind is NotificationKind.REMINDER else ""
    return (
        f"{notification.ticker} {notification.side}{reminder}: {notification.price:.2f} "
        f"is {direction} your threshold {notification.threshold:.2f}"
    )


def body(notification: Notification) -> str:
    """Plain-text body: ticker, price, threshold, direction and quote time."""
    direction = "above" if notification.side is Side.HIGH else "below"
    word = "still " if notification.kind is NotificationKind.REMINDER else ""
    return (
        f"{notification.ticker} is {word}{direction} the {notification.side} threshold you set.\n"
        f"\n"
        f"Ticker:    {notification.ticker}\n"
        f"Price:     {notification.price:.4f}\n"
        f"Threshold: {notification.threshold:.4f} ({notification.side}: alert when the price "
        f"is {direction} it)\n"
        f"Quoted at: {notification.quoted_at.isoformat()}\n"
        f"\n"
        f"You get one message per crossing. Alert id: {notification.notification_id}\n"
    )


# Autoescaped: nothing a user typed can become markup in the HTML part.
_HTML = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html><body style="font-family: sans-serif">
<p><strong>{{ ticker }}</strong> is {{ still }}{{ direction }} the {{ side }} threshold you set.</p>
<table>
<tr><td>Ticker</td><td>{{ ticker }}</td></tr>
<tr><td>Price</td><td>{{ "%.4f"|format(price) }}</td></tr>
<tr><td>Threshold</td><td>{{ "%.4f"|format(threshold) }} ({{ side }}: alert when the price is
{{ direction }} it)</td></tr>
<tr><td>Quoted at</td><td>{{ quoted_at }}</td></tr>
</table>
<p style="color: #666">You get one message per crossing.<br>
Alert id: {{ notification_id }}</p>
</body></html>
"""
)


def html_body(notification: Notification) -> str:
    """HTML alternative of `body`, rendered with autoescaping."""
    return _HTML.render(
        ticker=notification.ticker.value,
        still="still " if notification.kind is NotificationKind.REMINDER else "",
        direction="above" if notification.side is Side.HIGH else "below",
        side=notification.side.value,
        price=notification.price,
        threshold=notification.threshold,
        quoted_at=notification.quoted_at.isoformat(),
        notification_id=notification.notification_id,
    )


def build_message(notification: Notification, sender: str = DEFAULT_SENDER) -> EmailMessage:
    """The complete message; header values with CR/LF are refused by the strict policy."""
    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    message["To"] = notification.email.value
    message["Subject"] = subject(notification)
    message["Date"] = format_datetime(notification.quoted_at)
    message["Message-ID"] = message_id(notification)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Stockalert-Notification-Id"] = notification.notification_id
    if notification.correlation_id is not None:
        message["X-Stockalert-Correlation-Id"] = notification.correlation_id
    text, html = body(notification), html_body(notification)
    if BOUNDARY in text or BOUNDARY in html:
        raise ValueError("the message text contains the MIME boundary")
    message.set_content(text)
    message.make_alternative(boundary=BOUNDARY)
    message.add_alternative(html, subtype="html")
    return message


def to_bytes(message: EmailMessage) -> bytes:
    """The message as sent over SMTP (CRLF line ends)."""
    return message.as_bytes(policy=SMTP_POLICY)
