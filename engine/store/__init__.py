"""Where cases, users and ledgers are kept: the ``Store`` interface and its implementations."""
from __future__ import annotations

import os

from engine.store.base import Doc, Predicate, Store, Transaction
from engine.store.memory import CorruptStoreError, MemoryStore, StoreError
from engine.store.tinydb_store import TinyDBStore

__all__ = [
    "CorruptStoreError", "Doc", "MemoryStore", "Predicate", "Store", "StoreError",
    "TinyDBStore", "Transaction", "open_store",
]


def open_store(url_or_path: str | None) -> Store:
    """``None`` or ``"memory"`` gives a fresh ``MemoryStore``; anything else is a TinyDB file path."""
    if url_or_path is None or url_or_path in ("memory", "memory:", "memory://"):
        return MemoryStore()
    return TinyDBStore(os.path.expanduser(url_or_path))
