"""A running case: which workflow (id + version), its state, data, history and who it waits for.

Stored as plain JSON with a ``schema_version``; ``MIGRATIONS`` upgrades old records on read.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

CASES = "cases"
SCHEMA_VERSION = 4


def is_case_number(value: Any) -> bool:
    """A number a case can have: a whole number from 1 to the largest 64-bit id (a URL or a form may say 0 or -1)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**63


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """v2 added the governance mechanics: timers, contributions, objections, rounds, overdue flags."""
    doc.setdefault("timers", [])
    doc.setdefault("contributions", {})
    doc.setdefault("objections", [])
    doc.setdefault("conflicts", [])
    doc.setdefault("round", None)
    doc.setdefault("overdue", False)
    doc.setdefault("parent", None)
    doc.setdefault("escalated_to", [])
    return doc


def _v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    """v3 added approval rounds (several approvers on one step): state -> round."""
    doc.setdefault("approvals", {})
    return doc


def _v3_to_v4(doc: dict[str, Any]) -> dict[str, Any]:
    """v4 kept the earlier rounds of a collecting state the case entered again (``collect.on_reenter: fresh``)."""
    doc.setdefault("earlier_contributions", {})
    return doc


#: schema_version -> function upgrading a stored record to schema_version + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


@dataclass
class Case:
    workflow: str
    workflow_version: int
    state: str
    data: dict[str, Any]
    org_unit: str
    created_by: str
    created_at: str
    updated_at: str
    title: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    waiting_for: list[str] = field(default_factory=list)
    version: int = 1
    id: int | None = None
    round: str | None = None
    timers: list[dict[str, Any]] = field(default_factory=list)
    contributions: dict[str, dict[str, Any]] = field(default_factory=dict)   # state -> username -> contribution
    objections: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)                      # who declared a conflict of interest
    overdue: bool = False
    parent: int | None = None                                                # the case this one was started from
    escalated_to: list[str] = field(default_factory=list)                    # told when the state went overdue
    entered_at: str = ""                                                     # when the case entered its state
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)       # state -> its approval round
    #: state -> the rounds of contributions before it was entered again: [{"round", "ended_at", "contributions", "result"}]
    earlier_contributions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cc: list[str] = field(default_factory=list)                              # people copied in (抄送): they see it
    #: read without its history (a list page's row): shown, never written back
    summary: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def from_doc(cls, doc: dict[str, Any], owned: bool = False) -> "Case":
        """The case a stored document holds; ``owned``: the document is a private copy already (what the
        store's reads return), so the case may keep its values instead of copying them again. A document read
        without its ``history`` (see ``Store.lookup(omit=…)``) gives a ``summary`` case, which ``to_doc`` refuses."""
        doc = migrate(doc if owned else copy.deepcopy(doc))
        summary = "history" not in doc
        return cls(workflow=doc["workflow"], workflow_version=doc["workflow_version"], state=doc["state"],
                   data=doc["data"], org_unit=doc["org_unit"], created_by=doc["created_by"],
                   created_at=doc["created_at"], updated_at=doc["updated_at"], title=doc.get("title", ""),
                   history=doc.get("history", []), assignees=doc.get("assignees", []), waiting_for=doc.get("waiting_for", []),
                   version=doc["version"], id=doc.get("id"), round=doc["round"], timers=doc["timers"],
                   contributions=doc["contributions"], objections=doc["objections"], conflicts=doc["conflicts"],
                   overdue=doc["overdue"], parent=doc["parent"],
                   escalated_to=doc["escalated_to"], entered_at=entered_at(doc), approvals=doc["approvals"],
                   earlier_contributions=doc["earlier_contributions"], cc=doc.get("cc") or [],
                   summary=summary)  # cc: added within v3

    def to_doc(self) -> dict[str, Any]:
        if self.summary:
            raise ValueError(f"case #{self.id} was read without its history (a list row); read it whole to write it")
        return {"schema_version": SCHEMA_VERSION, "workflow": self.workflow, "workflow_version": self.workflow_version,
                "state": self.state, "data": self.data, "org_unit": self.org_unit, "created_by": self.created_by,
                "created_at": self.created_at, "updated_at": self.updated_at, "title": self.title,
                "history": self.history, "assignees": self.assignees, "waiting_for": self.waiting_for,
                "version": self.version, "id": self.id, "round": self.round, "timers": self.timers,
                "contributions": self.contributions, "objections": self.objections, "conflicts": self.conflicts,
                "overdue": self.overdue, "parent": self.parent,
                "escalated_to": self.escalated_to, "entered_at": self.entered_at, "approvals": self.approvals,
                "earlier_contributions": self.earlier_contributions, "cc": self.cc}

    def path_taken(self) -> list[str]:
        """States in the order the case visited them (for diagrams)."""
        states = [h["to"] for h in self.history if h.get("to")]
        return states or [self.state]


def entered_at(doc: dict[str, Any]) -> str:
    """When the case entered its current state: stored since the inbox sorts by waiting time; for a record written
    before that, the last history entry that moved it there (a list row without history: its last change)."""
    if doc.get("entered_at"):
        return str(doc["entered_at"])
    for entry in reversed(doc.get("history") or ()):
        if entry.get("to") == doc.get("state") and entry.get("from") != entry.get("to"):
            return str(entry.get("at") or "")
    return str(doc.get("updated_at") or doc.get("created_at") or "")


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    version = doc.get("schema_version", 1)
    while version < SCHEMA_VERSION:
        doc = MIGRATIONS[version](doc)
        version += 1
        doc["schema_version"] = version
    return doc
