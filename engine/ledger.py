"""The points ledger and the publication record: append-only, hash-chained, never negative.

Chain heads and accounts are found through the store's indexes (``engine.readmodel`` declares them:
``chain_heads`` by table, ``points_accounts`` by owner), so a post is O(1), not a scan.

Every entry carries the hash of the entry before it, so editing, removing or reordering
any stored entry breaks the chain; ``verify`` reports the first broken link.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from .clock import iso
from .errors import TransitionError
from .store.base import Store, Transaction

LEDGER = "ledger"
PUBLICATIONS = "publications"
ACCOUNTS = "points_accounts"
HEADS = "chain_heads"
GENESIS = "0" * 64
CHAINS = (LEDGER, PUBLICATIONS)


def entry_hash(entry: Mapping[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k not in ("hash", "id")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def append(tx: Transaction, table: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Append ``entry`` to the chain kept in ``table`` (O(1): the head is stored separately)."""
    found = tx.first(HEADS, ("table", table))
    head = found or {"table": table, "hash": GENESIS, "seq": 0}
    entry = {**entry, "seq": head["seq"] + 1, "prev": head["hash"]}
    entry["hash"] = entry_hash(entry)
    tx.insert(table, entry)
    head = {**head, "hash": entry["hash"], "seq": entry["seq"]}
    if found:
        tx.replace(HEADS, found["id"], head)
    else:
        tx.insert(HEADS, head)
    return entry


def account(tx: Transaction, owner: str, create: bool = True) -> dict[str, Any] | None:
    found = tx.first(ACCOUNTS, ("owner", owner))
    if found:
        return found
    if not create:
        return None
    doc = {"owner": owner, "balance": 0}
    doc["id"] = tx.insert(ACCOUNTS, doc)
    return doc


def post(tx: Transaction, owner: str, amount: int, *, reason: Mapping[str, str], case_id: int | None,
         workflow: str | None, transition: str | None, by: str, now: dt.datetime) -> dict[str, Any]:
    """Add ``amount`` (negative spends) to ``owner``'s balance; refuse anything that would go below zero."""
    acc = account(tx, owner)
    assert acc is not None
    balance = acc["balance"] + amount
    if balance < 0:
        raise TransitionError({"zh": f"积分不足：当前余额 {acc['balance']}，需要 {-amount}。",
                               "en": f"Not enough points: the balance is {acc['balance']}, {-amount} are needed."})
    acc["balance"] = balance
    tx.replace(ACCOUNTS, acc["id"], acc)
    return append(tx, LEDGER, {"account": owner, "amount": amount, "balance": balance, "reason": dict(reason),
                               "case": case_id, "workflow": workflow, "transition": transition, "by": by, "at": iso(now)})


@dataclass
class Broken:
    table: str
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"{self.table} entry {self.seq}: {self.problem}"


def verify(store: Store) -> list[Broken]:
    """The first broken link of each chain, and any balance that disagrees with its ledger."""
    found: list[Broken] = []
    for table in CHAINS:
        prev, seq = GENESIS, 0
        for entry in sorted(store.search(table), key=lambda e: e.get("seq", 0)):
            seq += 1
            if entry.get("seq") != seq:
                found.append(Broken(table, seq, f"entry {seq} is missing (found seq {entry.get('seq')})"))
                break
            if entry.get("prev") != prev:
                found.append(Broken(table, seq, "does not link to the entry before it"))
                break
            if entry_hash(entry) != entry.get("hash"):
                found.append(Broken(table, seq, "its content was changed after it was written"))
                break
            prev = entry["hash"]
        else:
            heads = store.search(HEADS, lambda d: d["table"] == table)
            if heads and (heads[0]["seq"] != seq or heads[0]["hash"] != prev):
                found.append(Broken(table, seq + 1, f"entries after {seq} were removed (the head says {heads[0]['seq']})"))
    totals: dict[str, int] = {}
    for entry in store.search(LEDGER):
        totals[entry["account"]] = totals.get(entry["account"], 0) + entry["amount"]
    for acc in store.search(ACCOUNTS):
        if acc["balance"] != totals.get(acc["owner"], 0):
            found.append(Broken(ACCOUNTS, 0, f"balance of {acc['owner']} is {acc['balance']}, the ledger adds up to "
                                             f"{totals.get(acc['owner'], 0)}"))
    return found


def publish(tx: Transaction, case: Any, state: str, public: Mapping[str, Any], by: str, now: dt.datetime) -> None:
    """Record a published decision (what was made public, when, by whom) in the publication chain."""
    digest = hashlib.sha256(json.dumps(public, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    append(tx, PUBLICATIONS, {"case": case.id, "workflow": case.workflow, "state": state, "title": case.title,
                              "content": digest, "by": by, "at": iso(now)})
