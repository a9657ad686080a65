"""The fraud team's alert e-mail: one alert or a digest of several, composed as plain text and
sent over SMTP.

aiosmtplib's errors (and the socket's) are converted at this boundary into `MailNotSent`, the
one failure the alerts worker handles: every reason to retry a mail looks the same to it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib
import msgspec

from webhooks.events import AlertData

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "[SentinelStream]"
# Counted in the digest's subject in this order; any other outcome comes after them.
_OUTCOMES = ("declined", "flagged")


class SmtpConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how to submit mail; an empty username means no login."""

    host: str = "127.0.0.1"
    port: int = 25
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout_s: float = 10.0


class MailNotSent(Exception):
    """The SMTP server did not accept the mail (refused, unreachable or too slow)."""

    code = "mail_not_sent"


def parse_recipients(text: str) -> tuple[str, ...]:
    """`"a@x, b@y"` -> ("a@x", "b@y"); an empty text means alerts are not mailed."""
    return tuple(address.strip() for address in text.split(",") if address.strip())


def _outcome(alert: AlertData) -> str:
    return alert.type.removeprefix("transaction.")


def subject_of(alerts: Sequence[AlertData]) -> str:
    """`[SentinelStream] transaction.declined t-1 (risk 0.87)` for one alert,
    `[SentinelStream] 12 alerts: 9 declined, 3 flagged` for a digest."""
    if len(alerts) == 1:
        alert = alerts[0]
        return (f"{SUBJECT_PREFIX} {alert.type} {alert.transaction_id} "
                f"(risk {alert.risk_score:.2f})")
    counts = Counter(_outcome(alert) for alert in alerts)
    order = [*_OUTCOMES, *sorted(set(counts) - set(_OUTCOMES))]
    parts = ", ".join(f"{counts[outcome]} {outcome}" for outcome in order if counts[outcome])
    return f"{SUBJECT_PREFIX} {len(alerts)} alerts: {parts}"


def summary_of(alert: AlertData) -> str:
    """One line for a log: what the mail of this alert would say."""
    return (f"{alert.type} {alert.transaction_id} risk {alert.risk_score:.2f} "
            f"reasons {','.join(alert.reasons) or '-'} amount {alert.amount} {alert.currency} "
            f"merchant {alert.merchant_id} card {alert.card_id} account {alert.account_id}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _section(alert: AlertData) -> str:
    versions = f"rules {alert.rules_version or '-'}, model {alert.model_version or '-'}"
    return "\n".join([
        f"{alert.type}  {alert.transaction_id}  risk {alert.risk_score:.2f}",
        f"  reasons:   {', '.join(alert.reasons) or '(none)'}",
        f"  amount:    {alert.amount} {alert.currency}",
        f"  merchant:  {alert.merchant_id} ({alert.merchant_category}, {alert.country})",
        f"  card:      {alert.card_id}",
        f"  account:   {alert.account_id}",
        f"  time:      {_iso(alert.event_time)} (recorded {_iso(alert.recorded_at)})",
        f"  versions:  {versions}",
    ])


def body_of(alerts: Sequence[AlertData]) -> str:
    """Plain text: one section per alert, the riskiest first."""
    ranked = sorted(alerts, key=lambda alert: alert.risk_score, reverse=True)
    if len(ranked) == 1:
        head = "SentinelStream screened a payment that needs review.\n"
    else:
        first = min(alert.recorded_at for alert in ranked)
        last = max(alert.recorded_at for alert in ranked)
        head = (f"{len(ranked)} payments need review, the riskiest first.\n"
                f"Recorded {_iso(first)} to {_iso(last)}.\n")
    return head + "\n" + "\n\n".join(_section(alert) for alert in ranked) + "\n"


def compose(alerts: Sequence[AlertData], *, sender: str, recipients: Sequence[str],
            now: datetime | None = None) -> EmailMessage:
    """The mail for `alerts` (at least one): a single alert or a digest."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject_of(alerts)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    # An explicit domain: without one make_msgid asks the resolver for this host's FQDN.
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "sentinelstream")
    message.set_content(body_of(alerts))
    return message


async def send(config: SmtpConfig, message: EmailMessage, *, sender: str,
               recipients: Sequence[str]) -> None:
    """Submit `message`; returns once the server accepted it for at least one recipient."""
    try:
        refused, _ = await aiosmtplib.send(
            message, sender=sender, recipients=list(recipients), hostname=config.host,
            port=config.port, username=config.username or None,
            password=config.password if config.username else None,
            start_tls=config.starttls, timeout=config.timeout_s)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise MailNotSent(f"{type(exc).__name__}: {exc}") from exc
    if refused:
        # The others have it; mailing them again would not reach the refused ones either.
        log.warning("alert mail %r: recipients refused: %s", message["Subject"], refused)
