"""Notifications that leave the app: by e-mail (SMTP) and by a generic HTTP channel (an SMS gateway, or a
WeCom / DingTalk group robot), as each person chooses on their account page.

When a notification is made (:func:`engine.notify.notify`), :func:`queue` puts one message per channel the
person turned on into the same outbox webhooks use (``engine.webhooks``), in the same transaction; the
timer process sends them with the webhook deliveries, with the same lease, retries and backoff. The
message carries the kind, the case number and title, and a link to the case; never a form's values.

Which channels exist is the operator's choice (:class:`ChannelConfig`, from the environment); a person
turns on only those, and gives the address each needs (an e-mail address, a mobile number).
"""
from __future__ import annotations

import json
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import TYPE_CHECKING, Any, Mapping, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from .clock import iso

if TYPE_CHECKING:
    import datetime as dt

    from .store.base import Doc, Transaction

OUTBOX = "outbox"  # engine.webhooks.OUTBOX: one outbox, one deliverer
CHANNELS = ("email", "http")
CHANNEL_TITLES: Mapping[str, Mapping[str, str]] = {
    "email": {"zh": "电子邮件", "en": "E-mail"},
    "http": {"zh": "短信 / 企业微信 / 钉钉", "en": "SMS / WeCom / DingTalk"},
}
HTTP_FORMATS = ("json", "wecom", "dingtalk")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")


class ChannelError(ValueError):
    """A channel setting the operator got wrong (named, with what it must be)."""


@dataclass(frozen=True)
class Preferences:
    """What a person asked for: the channels on, their addresses, and the kinds of notification sent out
    (empty: every kind)."""

    channels: tuple[str, ...] = ()
    email: str = ""
    mobile: str = ""
    kinds: tuple[str, ...] = ()

    @classmethod
    def of(cls, user_doc: Mapping[str, Any]) -> "Preferences":
        raw = user_doc.get("notify") or {}
        return cls(tuple(raw.get("channels") or ()), raw.get("email") or "", raw.get("mobile") or "",
                   tuple(raw.get("kinds") or ()))

    def to_doc(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "email": self.email, "mobile": self.mobile, "kinds": list(self.kinds)}

    def address(self, channel: str) -> str:
        return self.email if channel == "email" else self.mobile

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds


def problems(prefs: Preferences, offered: tuple[str, ...], kinds: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """What is wrong with ``prefs`` per field, given the channels this server ``offered``."""
    found: dict[str, list[dict[str, str]]] = {}

    def add(name: str, zh: str, en: str) -> None:
        found.setdefault(name, []).append({"zh": zh, "en": en})
    for channel in prefs.channels:
        if channel not in offered:
            add("channels", "本系统未开通此通知方式。", "This server does not offer that channel.")
    if prefs.email and not _EMAIL.match(prefs.email):
        add("email", "请填写有效的电子邮件地址。", "Enter a valid e-mail address.")
    if "email" in prefs.channels and not prefs.email:
        add("email", "开通邮件通知须填写邮件地址。", "E-mail notifications need an e-mail address.")
    if prefs.mobile and not _MOBILE.match(prefs.mobile):
        add("mobile", "请填写 11 位手机号码。", "Enter an 11-digit mobile number.")
    if "http" in prefs.channels and not prefs.mobile:
        add("mobile", "开通短信通知须填写手机号码。", "SMS notifications need a mobile number.")
    if any(k not in kinds for k in prefs.kinds):
        add("kinds", "未知的通知类别。", "Unknown kind of notification.")
    return found


# --------------------------------------------------------------------------- queuing, inside the change

def queue(tx: "Transaction", user_doc: Mapping[str, Any], notification: Mapping[str, Any], now: "dt.datetime") -> int:
    """Put one outbox message per channel ``user_doc``'s owner turned on for this kind of notification."""
    prefs = Preferences.of(user_doc)
    if not prefs.channels or not prefs.wants(notification["kind"]):
        return 0
    count = 0
    for channel in prefs.channels:
        address = prefs.address(channel)
        if not address:
            continue
        tx.insert(OUTBOX, {"channel": channel, "to": address, "username": user_doc["username"],
                           "lang": user_doc.get("lang") or "zh", "event": f"notify.{notification['kind']}",
                           "payload": {"kind": notification["kind"], "case": notification.get("case"),
                                       "title": notification.get("title") or "", "label": notification.get("label") or {}},
                           "status": "pending", "attempts": 0, "created_at": iso(now), "next_at": iso(now),
                           "last_status": None, "last_error": "", "delivered_at": None})
        count += 1
    return count


def message_text(doc: Mapping[str, Any], kinds: Mapping[str, Mapping[str, str]], base_url: str) -> tuple[str, str]:
    """(subject, body) of one outbox message, in the person's language."""
    lang = doc.get("lang") if doc.get("lang") in ("zh", "en") else "zh"
    payload = doc["payload"]
    kind = kinds.get(payload["kind"], {}).get(lang) or payload["kind"]
    label = payload.get("label") or {}
    step = label.get(lang) or label.get("zh") or ""
    case = payload.get("case")
    subject = f"【Civicflow】{kind}：#{case} {payload.get('title', '')}".strip()
    link = f"{base_url.rstrip('/')}/cases/{case}" if base_url and case else ""
    body = "\n".join(part for part in (subject, step, link) if part)
    return subject, body


# --------------------------------------------------------------------------- sending, outside it

class Channel(Protocol):
    def send(self, doc: "Doc", subject: str, body: str) -> tuple[int | None, str]:
        """Send one message; returns (status, error text: empty when sent)."""
        ...


@dataclass(frozen=True)
class EmailChannel:
    """SMTP, as ``smtp://user:password@host:587?starttls=1`` (``smtps://`` for TLS from the start)."""

    url: str
    sender: str

    def send(self, doc: "Doc", subject: str, body: str) -> tuple[int | None, str]:
        parts = urlsplit(self.url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        message = EmailMessage()
        message["From"] = formataddr(("Civicflow", self.sender))
        message["To"] = doc["to"]
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=self.sender.split("@")[-1])
        message.set_content(body)
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
        client_class = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
        with client_class(parts.hostname or "localhost", port, timeout=10) as client:
            if options.get("starttls") in ("1", "true", "yes"):
                client.starttls(context=ssl.create_default_context())
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            refused = client.send_message(message)
        if refused:
            return 550, f"refused: {', '.join(refused)}"
        return 250, ""


@dataclass(frozen=True)
class HttpChannel:
    """A POST to the operator's gateway: ``json`` ``{"to", "text", "subject", "username"}`` for an SMS
    gateway, or a WeCom / DingTalk robot message mentioning the person's mobile number."""

    url: str
    format: str = "json"
    send_http: Any = None  # ``engine.webhooks.http_send``; given so tests and webhooks share one sender

    def body(self, doc: "Doc", subject: str, text: str) -> dict[str, Any]:
        if self.format == "wecom":
            return {"text": {"content": text, "mentioned_mobile_list": [doc["to"]]}, "msgtype": "text"}
        if self.format == "dingtalk":
            return {"text": {"content": text}, "at": {"atMobiles": [doc["to"]]}, "msgtype": "text"}
        return {"to": doc["to"], "username": doc.get("username"), "subject": subject, "text": text}

    def send(self, doc: "Doc", subject: str, body: str) -> tuple[int | None, str]:
        data = json.dumps(self.body(doc, subject, body), ensure_ascii=False).encode()
        status, text = self.send_http(self.url, data, {"Content-Type": "application/json; charset=utf-8",
                                                       "User-Agent": "Civicflow-Notify/1"})
        return status, "" if 200 <= status < 300 else f"HTTP {status}: {text[:200]}"


@dataclass(frozen=True)
class ChannelConfig:
    """The channels this server offers (from ``CIVICFLOW_SMTP_URL``, ``CIVICFLOW_MAIL_FROM``,
    ``CIVICFLOW_NOTIFY_HTTP_URL``, ``CIVICFLOW_NOTIFY_HTTP_FORMAT``) and the address links point at
    (``CIVICFLOW_BASE_URL``)."""

    smtp_url: str = ""
    mail_from: str = ""
    http_url: str = ""
    http_format: str = "json"
    base_url: str = ""
    channels: dict[str, Channel] = field(default_factory=dict, compare=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], send_http: Any) -> "ChannelConfig":
        smtp = (environ.get("CIVICFLOW_SMTP_URL") or "").strip()
        sender = (environ.get("CIVICFLOW_MAIL_FROM") or "").strip()
        http = (environ.get("CIVICFLOW_NOTIFY_HTTP_URL") or "").strip()
        fmt = (environ.get("CIVICFLOW_NOTIFY_HTTP_FORMAT") or "json").strip().lower()
        base = (environ.get("CIVICFLOW_BASE_URL") or "").strip()
        if smtp and urlsplit(smtp).scheme not in ("smtp", "smtps"):
            raise ChannelError("CIVICFLOW_SMTP_URL must look like smtp://user:password@host:587?starttls=1 "
                               "or smtps://host:465")
        if smtp and not _EMAIL.match(sender):
            raise ChannelError("CIVICFLOW_MAIL_FROM must be the e-mail address notifications are sent from")
        if http and urlsplit(http).scheme not in ("http", "https"):
            raise ChannelError("CIVICFLOW_NOTIFY_HTTP_URL must be an http:// or https:// URL")
        if fmt not in HTTP_FORMATS:
            raise ChannelError(f"CIVICFLOW_NOTIFY_HTTP_FORMAT must be one of {', '.join(HTTP_FORMATS)}, not {fmt!r}")
        if base and urlsplit(base).scheme not in ("http", "https"):
            raise ChannelError("CIVICFLOW_BASE_URL must be the site's address, e.g. https://civicflow.example.org")
        channels: dict[str, Channel] = {}
        if smtp:
            channels["email"] = EmailChannel(smtp, sender)
        if http:
            channels["http"] = HttpChannel(http, fmt, send_http)
        return cls(smtp, sender, http, fmt, base, channels)

    @property
    def offered(self) -> tuple[str, ...]:
        return tuple(c for c in CHANNELS if c in self.channels)
