"""A child process for tests/test_backup.py: writes to a TinyDB store until stopped, through the ledger.

    backup_worker.py PATH
        Forever: one transaction that posts 1 point to an account (balance, ledger entry, chain head) and
        inserts an "items" document naming the ledger entry; prints "ready" after the first one.

Each transaction writes to four tables, so a backup that caught one half-way would show it: as many items
as ledger entries, balances that add up to the ledger, a chain whose head is its last entry.
"""
from __future__ import annotations

import datetime as dt
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine import ledger  # noqa: E402
from engine.store import TinyDBStore  # noqa: E402
from engine.store.base import Index, Store  # noqa: E402


def declare_ledger_indexes(store: Store) -> None:
    """The two indexes ``engine.ledger`` looks things up by (``engine.readmodel.install`` declares them in the app)."""
    store.add_index(Index(ledger.ACCOUNTS, ledger.ACCOUNTS, keys=lambda d: [("owner", d["owner"])]))
    store.add_index(Index(ledger.HEADS, ledger.HEADS, keys=lambda d: [("table", d["table"])]))


def main(path: str) -> None:
    store = TinyDBStore(path, compact_bytes=64 * 1024)  # compacts often: a backup must not care
    declare_ledger_indexes(store)
    now = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    n = 0
    while True:
        n += 1
        with store.transaction() as tx:
            entry = ledger.post(tx, f"owner{n % 5}", 1, reason={"en": "test"}, case_id=None, workflow=None,
                                transition=None, by="worker", now=now)
            tx.insert("items", {"seq": entry["seq"]})
        if n == 1:
            print("ready", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
