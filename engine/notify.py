"""In-app notifications: what needs a person's attention, with unread counts."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from .clock import iso
from .store.base import Transaction

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
}


def notify(tx: Transaction, usernames: Iterable[str], kind: str, case: Any, label: Mapping[str, str],
           now: dt.datetime, skip: str | None = None) -> None:
    for username in sorted(set(usernames)):
        if username and username != skip:
            tx.insert(NOTIFICATIONS, {"to": username, "case": case.id, "at": iso(now), "read": False, "kind": kind,
                                      "title": case.title, "label": dict(label), "state": case.state})
