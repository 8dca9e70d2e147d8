"""Moving whole stores: every table read in one transaction, written in one, ids kept, then checked.

Through the ``Store`` interface only, so it works between any two stores (memory, TinyDB file, PostgreSQL):
``civicflow db copy`` uses it directly, and :mod:`engine.backup` for backups and restores.

One transaction to read: it is exclusive across threads and processes, so what is read is one committed
state, never half of a transaction. One transaction to write: it is atomic on every store (on the TinyDB
store it is one journal line, which lands whole or not at all), so a failure leaves the target as it was.
Every document is stored under its own id with ``Transaction.replace`` (ids are what cases, ledger entries
and uploads refer to each other by), which also moves the target's id counter past the highest id, so a
later ``insert`` does not collide. A store never hands out an id again, even a deleted one; a copy only
knows the ids that exist, so after a copy the counter continues after the highest *existing* id (Civicflow
deletes nothing today, so the two are the same).
"""
from __future__ import annotations

from typing import Any

from . import ledger
from .errors import EngineError
from .store.base import Doc, Store

Dump = dict[str, list[Doc]]


class TransferError(EngineError):
    """A copy, backup or restore cannot be made or is refused; the message says why and what to do."""


def describe(store: Store) -> str:
    """How messages name a store: its file for a file store, else its kind (never a URL: it may hold a password)."""
    return str(getattr(store, "path", None) or f"the {type(store).__name__}")


# -- reading and writing whole stores ---------------------------------------------------------


def read_all(store: Store) -> Dump:
    """Every document of every table, read inside one transaction (one consistent, committed state).

    The tables are listed inside it too: a transaction that creates a table while this one waits must not
    have its writes to the other tables read without those to the new one."""
    with store.transaction() as tx:
        return {table: tx.search(table) for table in store.tables()}


def counts(dump: Dump) -> dict[str, int]:
    return {table: len(docs) for table, docs in sorted(dump.items()) if docs}


def chain_heads(dump: Dump) -> dict[str, dict[str, Any]]:
    """The last entry (sequence number and hash) of each hash-chained ledger, as its head document says."""
    heads = {doc.get("table"): doc for doc in dump.get(ledger.HEADS, [])}
    found = {chain: heads.get(chain, {}) for chain in ledger.CHAINS}
    return {chain: {"seq": head.get("seq", 0), "hash": head.get("hash", ledger.GENESIS)} for chain, head in found.items()}


def store_counts(store: Store) -> dict[str, int]:
    return {table: n for table in store.tables() if (n := store.count(table))}


def write_all(store: Store, dump: Dump, *, force: bool = False, what: str = "the target store") -> None:
    """Make ``store`` hold exactly ``dump``, ids kept, in one transaction.

    Refuses a store that holds anything unless ``force`` (then what the dump does not have is deleted).
    The emptiness check runs inside the same transaction as the writes, so nothing can slip in between.
    """
    with store.transaction() as tx:
        present = {table: n for table in store.tables() if (n := store.count(table))}
        if present and not force:
            held = ", ".join(f"{n} {table}" for table, n in sorted(present.items()))
            raise TransferError(f"{what} is not empty ({held}); nothing was changed. "
                              f"Use --force to replace what it holds.")
        for table in present:
            keep = {doc["id"] for doc in dump.get(table, [])}
            for doc in tx.search(table):
                if doc["id"] not in keep:
                    tx.delete(table, doc["id"])
        for table, docs in dump.items():
            tx.replace_many(table, docs)
    store.analyze()  # a bulk load: fresh planner statistics (PostgreSQL), before anyone queries it


def check_store(store: Store, expected_counts: dict[str, int], expected_heads: dict[str, dict[str, Any]],
                what: str) -> list[str]:
    """Every way ``store`` differs from what it should hold: counts per table, ledger chains, chain heads."""
    problems = []
    found = store_counts(store)
    for table in sorted(set(found) | set(expected_counts)):
        if found.get(table, 0) != expected_counts.get(table, 0):
            problems.append(f"{what}: table {table!r} has {found.get(table, 0)} documents, "
                            f"{expected_counts.get(table, 0)} expected")
    problems += [f"{what}: ledger broken: {broken}" for broken in ledger.verify(store)]
    heads = chain_heads({ledger.HEADS: store.search(ledger.HEADS)})
    for chain, head in expected_heads.items():
        if heads.get(chain) != head:
            problems.append(f"{what}: the {chain} chain ends at entry {heads.get(chain, {}).get('seq')}, "
                            f"{head.get('seq')} expected")
    return problems


# -- copying between stores ----------------------------------------------------------------------


def copy_store(source: Store, target: Store, *, force: bool = False) -> dict[str, int]:
    """Copy every table of ``source`` into ``target``, ids kept, then check the target; returns the counts.

    What is read is checked first (in a memory store: counts and both ledger chains), so a source with a broken
    ledger is refused before anything is written instead of producing a target that fails the same check.
    """
    from .store.memory import MemoryStore

    dump = read_all(source)
    expected, heads = counts(dump), chain_heads(dump)
    scratch = MemoryStore()
    write_all(scratch, dump)
    problems = check_store(scratch, expected, heads, "the source")
    if problems:
        raise TransferError("the source does not verify; nothing was copied:\n  " + "\n  ".join(problems))
    write_all(target, dump, force=force, what=f"the target {describe(target)}")
    problems = check_store(target, expected, heads, "the target")
    if problems:
        raise TransferError("copied, but the target does not match the source:\n  " + "\n  ".join(problems))
    return expected
