"""In-app notifications: what needs a person's attention, with unread counts (and, for those who asked, the
same by e-mail or SMS: ``engine.channels``)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from . import channels
from .clock import iso
from .store.base import Transaction
from .users import USERS

NOTIFICATIONS = "notifications"

#: kind -> how the list names it
KINDS: Mapping[str, Mapping[str, str]] = {
    "assigned": {"zh": "分配给您", "en": "Assigned to you"},
    "claimed": {"zh": "已被认领", "en": "Claimed"},
    "overdue": {"zh": "已超期", "en": "Overdue"},
    "objection": {"zh": "收到异议", "en": "Objection filed"},
    "result": {"zh": "结果已公布", "en": "Result published"},
    "case_changed": {"zh": "办理进度", "en": "Progress"},
    "approval": {"zh": "待您审批", "en": "Awaiting your approval"},
    "urge": {"zh": "催办", "en": "Reminder: waiting for you"},
    "cc": {"zh": "抄送给您", "en": "Copied to you"},
    "delegated": {"zh": "已代您办理", "en": "Done on your behalf"},
}


def notify(tx: Transaction, usernames: Iterable[str], kind: str, case: Any, label: Mapping[str, str],
           now: dt.datetime, skip: str | None = None) -> None:
    for username in sorted(set(usernames)):
        if username and username != skip:
            doc = {"to": username, "case": case.id, "at": iso(now), "read": False, "kind": kind,
                   "title": case.title, "label": dict(label), "state": case.state}
            tx.insert(NOTIFICATIONS, doc)
            person = tx.first(USERS, ("username", username))
            if person is not None and person.get("notify"):
                channels.queue(tx, person, doc, now)  # e-mail / SMS the person asked for, in this transaction
