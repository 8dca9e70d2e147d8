"""A child process for tests/test_store_durability.py: works on a TinyDBStore (PATH a file) or a PostgresStore
(PATH a postgresql:// URL; COMPACT_BYTES is then ignored) and reports on stdout.

    store_worker.py acks PATH COMPACT_BYTES
        Forever: one transaction inserting the same token into "acks" and "pairs";
        prints the token once the transaction has returned (= acknowledged).
    store_worker.py counter PATH COMPACT_BYTES WORKER COUNT
        Prints "ready", waits for a line on stdin, then COUNT transactions that each
        increment counters/1 and insert {"worker", "i"} into "items"; prints each new id.
    store_worker.py reader PATH TOTAL
        Until counters/1 reaches TOTAL, checks that no read ever sees an item without
        its counter increment or the counter going back; prints "ok" or the problems.

COMPACT_BYTES "default" means the store's own threshold.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.store import Store, TinyDBStore, is_database_url  # noqa: E402


def open_store(path: str, compact: str = "default") -> Store:
    if is_database_url(path):
        from engine.store import PostgresStore

        return PostgresStore(path)
    return TinyDBStore(path, compact_bytes=None if compact == "default" else int(compact))


def acks(path: str, compact: str) -> None:
    store = open_store(path, compact)
    run = os.getpid()
    n = 0
    while True:
        n += 1
        token = f"{run}-{n}"
        with store.transaction() as tx:
            tx.insert("acks", {"token": token, "pad": "a" * 100})
            tx.insert("pairs", {"token": token, "pad": "p" * 100})
        print(token, flush=True)


def counter(path: str, compact: str, worker: str, count: str) -> None:
    store = open_store(path, compact)
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(int(count)):
        with store.transaction() as tx:
            current = tx.get("counters", 1) or {"value": 0}
            tx.replace("counters", 1, {"value": current["value"] + 1})
            doc_id = tx.insert("items", {"worker": worker, "i": i})
        print(doc_id, flush=True)
    store.close()


def reader(path: str, total: str) -> None:
    store = open_store(path)
    print("ready", flush=True)
    sys.stdin.readline()
    problems = []
    reads = 0
    last = 0
    while last < int(total) and len(problems) < 10:
        before = (store.get("counters", 1) or {"value": 0})["value"]
        items = store.count("items")
        after = (store.get("counters", 1) or {"value": 0})["value"]
        reads += 1
        if not last <= before <= items <= after:
            problems.append(f"last={last} before={before} items={items} after={after}")
        last = after
    print(f"ok {reads}" if not problems else "\n".join(problems), flush=True)


if __name__ == "__main__":
    {"acks": acks, "counter": counter, "reader": reader}[sys.argv[1]](*sys.argv[2:])
