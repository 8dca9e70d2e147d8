"""Webhooks: an admin subscribes a URL to events of the cases in their units (a case started, a state
entered, a notice opened or closed, points posted); each event is a signed HTTP POST.

A transactional outbox: :func:`emit` is called inside the store transaction of the change and inserts one
delivery per matching subscription there, so a delivery exists exactly when the change was committed
(never for a rolled-back one, never lost in a crash). :class:`Deliverer` sends what is due outside any
transaction — the timer process does it, one process among all hosts (``engine.web.ticker``) — after
leasing each delivery for :data:`LEASE`, so a process dying mid-send leaves it to be sent again: delivery is
at least once, and receivers drop repeats by the ``X-Civicflow-Delivery`` id. A failed send is retried with
exponential backoff up to :data:`MAX_ATTEMPTS` times.

Signing: ``X-Civicflow-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with the
subscription's secret and ``X-Civicflow-Timestamp``, so a receiver checks who sent it and refuses replays
of old deliveries. The secret is kept by the store (it must be, to sign) and shown once, when made.

No Flask here; the admin pages are ``engine.web.webhooks``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from .clock import Clock, iso
from .clock import now as default_clock
from .store.base import Doc, Index

if TYPE_CHECKING:
    from .cases import Case
    from .channels import ChannelConfig
    from .spec import Definitions, OrgTree
    from .store.base import Store, Transaction

WEBHOOKS = "webhooks"
OUTBOX = "outbox"
WEBHOOK_INDEX = "webhooks"
OUTBOX_INDEX = "outbox"
#: Every event a subscription may name, with what admins read.
EVENTS: Mapping[str, Mapping[str, str]] = {
    "case_started": {"zh": "事项发起", "en": "Case started"},
    "state_entered": {"zh": "进入新状态", "en": "State entered"},
    "notice_opened": {"zh": "公示开始", "en": "Notice opened"},
    "notice_closed": {"zh": "公示结束", "en": "Notice closed"},
    "points_posted": {"zh": "积分入账", "en": "Points posted"},
}
MAX_ATTEMPTS = 8
LEASE = dt.timedelta(minutes=2)
TIMEOUT = 10.0  # seconds a receiver has to answer
MAX_BACKOFF = dt.timedelta(hours=6)

#: ``send(url, body, headers) -> (status, text)``; raises OSError when nothing answered.
Sender = Callable[[str, bytes, Mapping[str, str]], tuple[int, str]]


def indexes() -> list[Index]:
    """Active subscriptions (each under every workflow it names, or ``*``); deliveries due, oldest first;
    deliveries per subscription, newest first."""
    def subscription_keys(doc: Doc) -> list[tuple[str, str]]:
        if not doc.get("active", True):
            return []
        return [("active", w) for w in doc.get("workflows") or ["*"]]

    def outbox_keys(doc: Doc) -> list[tuple[Any, ...]]:
        # webhook deliveries under their subscription; messages (engine.channels) under their person
        found: list[tuple[Any, ...]] = [("sub", doc["subscription"])] if "subscription" in doc else \
            [("to_user", doc.get("username") or "")]
        if doc.get("status") == "pending":
            found.append(("pending",))
        return found
    return [Index(WEBHOOK_INDEX, WEBHOOKS, keys=subscription_keys, version="1"),
            Index(OUTBOX_INDEX, OUTBOX, keys=outbox_keys, order=lambda d: (d.get("next_at") or "", d["id"]),
                  version="1")]


def url_problem(url: str) -> dict[str, str] | None:
    """Why ``url`` cannot receive webhooks, or None."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return {"zh": "请填写以 http:// 或 https:// 开头的完整网址。", "en": "Enter a full URL starting with http:// or https://."}
    if len(url) > 500:
        return {"zh": "网址过长。", "en": "The URL is too long."}
    return None


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (and the tests): compare in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


# --------------------------------------------------------------------------- emitting, inside the change

def emit(tx: "Transaction", definitions: "Definitions", event: str, case: "Case", now: dt.datetime,
         **details: Any) -> int:
    """Queue ``event`` about ``case`` for every active subscription that wants it (same transaction as the
    change). Returns the number queued; costs one indexed lookup when nobody subscribes."""
    subscriptions = tx.lookup(WEBHOOK_INDEX, [("active", case.workflow), ("active", "*")], newest=False).docs
    wanted = [s for s in subscriptions
              if event in s.get("events", ()) and _covers(definitions.org, s.get("unit"), case.org_unit)]
    if not wanted:
        return 0
    payload = {"event": event, "at": iso(now), "case": _case_payload(definitions, case), **details}
    for subscription in wanted:
        tx.insert(OUTBOX, {"subscription": subscription["id"], "event": event, "payload": payload,
                           "status": "pending", "attempts": 0, "created_at": iso(now), "next_at": iso(now),
                           "last_status": None, "last_error": "", "delivered_at": None})
    return len(wanted)


def _covers(org: "OrgTree", unit: str | None, case_unit: str | None) -> bool:
    return not unit or (case_unit is not None and org.contains(unit, case_unit))


def _case_payload(definitions: "Definitions", case: "Case") -> dict[str, Any]:
    """What a receiver is told about a case: ids, state and the fields not marked sensitive (a webhook
    goes to another system: personal data stays here, to be read through the API with a token)."""
    wf = definitions.workflows.get(case.workflow)
    form = definitions.forms.get(wf.start_form) if wf is not None else None
    hidden = {path.split(".")[0] for path, f in form.walk() if f.sensitive} if form is not None else set(case.data)
    return {"id": case.id, "workflow": case.workflow, "workflow_version": case.workflow_version,
            "state": case.state, "title": case.title if not hidden else _safe_title(case, hidden),
            "org_unit": case.org_unit, "created_by": case.created_by, "version": case.version,
            "data": {k: v for k, v in case.data.items() if k not in hidden}}


def _safe_title(case: "Case", hidden: set[str]) -> str:
    """A title made from a sensitive field would leak it: then the case number stands for it."""
    shown = [str(case.data.get(k)) for k in hidden if case.data.get(k) not in (None, "")]
    return f"#{case.id}" if any(value and value in (case.title or "") for value in shown) else case.title


# --------------------------------------------------------------------------- subscriptions

@dataclass(frozen=True)
class Subscription:
    id: int
    url: str
    events: tuple[str, ...]
    workflows: tuple[str, ...]
    unit: str
    active: bool
    created_by: str
    created_at: str

    @classmethod
    def from_doc(cls, doc: Doc) -> "Subscription":
        return cls(doc["id"], doc["url"], tuple(doc.get("events") or ()), tuple(doc.get("workflows") or ()),
                   doc.get("unit") or "", doc.get("active", True), doc.get("created_by", ""), doc.get("created_at", ""))


class Webhooks:
    """Subscriptions and their deliveries on one store (the admin pages and the deliverer use it)."""

    def __init__(self, store: "Store", clock: Clock = default_clock):
        self.store = store
        self.clock = clock

    def subscribe(self, tx: "Transaction", url: str, events: Iterable[str], workflows: Iterable[str], unit: str,
                  by: str) -> tuple[int, str]:
        """A new subscription; returns its id and its secret (shown once)."""
        secret = new_secret()
        sid = tx.insert(WEBHOOKS, {"url": url.strip(), "events": sorted(set(events)), "workflows": sorted(set(workflows)),
                                   "unit": unit, "active": True, "secret": secret, "created_by": by,
                                   "created_at": iso(self.clock())})
        return sid, secret

    def set_active(self, tx: "Transaction", subscription_id: int, active: bool) -> None:
        doc = tx.get(WEBHOOKS, subscription_id)
        if doc is not None:
            doc["active"] = active
            tx.replace(WEBHOOKS, subscription_id, doc)

    def all(self) -> list[Subscription]:
        return [Subscription.from_doc(d) for d in self.store.search(WEBHOOKS)]  # a handful: admins make them

    def get(self, subscription_id: int) -> Subscription | None:
        doc = self.store.get(WEBHOOKS, subscription_id)
        return Subscription.from_doc(doc) if doc else None

    def deliveries(self, subscription_id: int, offset: int = 0, limit: int = 50) -> tuple[list[Doc], int]:
        page = self.store.lookup(OUTBOX_INDEX, [("sub", subscription_id)], offset=offset, limit=limit)
        return page.docs, page.total

    def redeliver(self, tx: "Transaction", delivery_id: int) -> None:
        """Send a delivery again now (after the receiver was fixed), whatever its status."""
        doc = tx.get(OUTBOX, delivery_id)
        if doc is not None:
            doc.update(status="pending", next_at=iso(self.clock()), attempts=min(doc.get("attempts", 0), MAX_ATTEMPTS - 1))
            tx.replace(OUTBOX, delivery_id, doc)

    def ping(self, tx: "Transaction", subscription_id: int, by: str) -> int:
        """A test delivery (event ``ping``) to check the receiver and the secret."""
        now = iso(self.clock())
        return tx.insert(OUTBOX, {"subscription": subscription_id, "event": "ping", "status": "pending",
                                  "payload": {"event": "ping", "at": now, "by": by}, "attempts": 0,
                                  "created_at": now, "next_at": now, "last_status": None, "last_error": "",
                                  "delivered_at": None})


# --------------------------------------------------------------------------- delivering, outside it

def http_send(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
    """POST with the standard library; an HTTP error status is an answer, not an exception."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - http(s) checked at subscribe
            return response.status, response.read(2000).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode("utf-8", "replace") if exc.fp else ""


def backoff(attempts: int) -> dt.timedelta:
    """1, 2, 4, 8… minutes after the n-th failed attempt, at most :data:`MAX_BACKOFF`."""
    return min(dt.timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


class Deliverer:
    """Sends due deliveries: lease each in a transaction, POST it (or hand a notification message to its
    channel, ``engine.channels``), record the answer in another."""

    def __init__(self, store: "Store", clock: Clock = default_clock, send: Sender = http_send,
                 channels: "ChannelConfig | None" = None):
        self.store = store
        self.clock = clock
        self.send = send
        self.channels = channels

    def deliver_due(self, limit: int = 50) -> dict[str, int]:
        counts = {"delivered": 0, "retrying": 0, "failed": 0}
        for delivery_id in self._due(limit):
            leased = self._lease(delivery_id)
            if leased is None:
                continue
            doc, subscription = leased
            if subscription is None:
                counts[self._message(delivery_id, doc)] += 1
                continue
            body = json.dumps({**doc["payload"], "delivery": delivery_id}, ensure_ascii=False,
                              separators=(",", ":")).encode()
            timestamp = str(int(self.clock().timestamp()))
            headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Civicflow-Webhooks/1",
                       "X-Civicflow-Event": doc["event"], "X-Civicflow-Delivery": str(delivery_id),
                       "X-Civicflow-Timestamp": timestamp,
                       "X-Civicflow-Signature": sign(subscription["secret"], timestamp, body)}
            try:
                status, text = self.send(subscription["url"], body, headers)
                error = "" if 200 <= status < 300 else f"HTTP {status}: {text[:200]}"
            except (OSError, ValueError) as exc:  # refused, timed out, DNS, TLS: no answer at all
                status, error = None, f"{exc.__class__.__name__}: {str(exc)[:200]}"
            counts[self._record(delivery_id, status, error)] += 1
        return counts

    def _due(self, limit: int) -> list[int]:
        now = iso(self.clock())
        page = self.store.lookup(OUTBOX_INDEX, [("pending",)], newest=False, limit=limit,
                                 where=lambda d: (d.get("next_at") or "") <= now, omit=("payload",))
        return [d["id"] for d in page.docs]

    def _message(self, delivery_id: int, doc: Doc) -> str:
        """A notification message (e-mail, SMS, robot) through the channel the person chose."""
        from .channels import message_text
        from .notify import KINDS
        channel = self.channels.channels.get(doc["channel"]) if self.channels is not None else None
        if channel is None:
            return self._record(delivery_id, None, f"the {doc['channel']} channel is not set up on this server",
                                give_up=True)
        subject, text = message_text(doc, KINDS, self.channels.base_url if self.channels else "")
        try:
            status, error = channel.send(doc, subject, text)
        except (OSError, ValueError, smtplib.SMTPException) as exc:
            status, error = None, f"{exc.__class__.__name__}: {str(exc)[:200]}"
        return self._record(delivery_id, status, error)

    def _lease(self, delivery_id: int) -> tuple[Doc, Doc | None] | None:
        """Take a due delivery for :data:`LEASE` (a process dying while sending leaves it to be sent again)."""
        now = self.clock()
        with self.store.transaction() as tx:
            doc = tx.get(OUTBOX, delivery_id)
            if doc is None or doc.get("status") != "pending" or (doc.get("next_at") or "") > iso(now):
                return None  # another process took it, or it is not due after all
            subscription = tx.get(WEBHOOKS, doc["subscription"]) if "subscription" in doc else None
            if "subscription" in doc and (subscription is None or not subscription.get("active", True)):
                doc.update(status="cancelled", last_error="the subscription was switched off")
                tx.replace(OUTBOX, delivery_id, doc)
                return None
            doc["next_at"] = iso(now + LEASE)
            doc["attempts"] = doc.get("attempts", 0) + 1
            tx.replace(OUTBOX, delivery_id, doc)
            return doc, subscription

    def _record(self, delivery_id: int, status: int | None, error: str, give_up: bool = False) -> str:
        now = self.clock()
        with self.store.transaction() as tx:
            doc = tx.get(OUTBOX, delivery_id)
            assert doc is not None
            doc["last_status"] = status
            doc["last_error"] = error
            if not error:
                doc.update(status="delivered", delivered_at=iso(now))
                outcome = "delivered"
            elif doc["attempts"] >= MAX_ATTEMPTS or give_up:
                doc["status"] = "failed"
                outcome = "failed"
            else:
                doc["next_at"] = iso(now + backoff(doc["attempts"]))
                outcome = "retrying"
            tx.replace(OUTBOX, delivery_id, doc)
        return outcome
