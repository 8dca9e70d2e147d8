"""Where cases, users and ledgers are kept: the ``Store`` interface and its implementations.

The implementations are imported on first use, so code that only needs the interface
(``from engine.store.base import Store``, which imports this package first) does not
pull in TinyDB.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from engine.store.base import Doc, Predicate, Store, Transaction

if TYPE_CHECKING:
    from engine.store.memory import CorruptStoreError, MemoryStore, StoreError
    from engine.store.tinydb_store import TinyDBStore

__all__ = [
    "CorruptStoreError", "Doc", "MemoryStore", "Predicate", "Store", "StoreError",
    "TinyDBStore", "Transaction", "open_store",
]

_LAZY = {
    "CorruptStoreError": "engine.store.memory",
    "MemoryStore": "engine.store.memory",
    "StoreError": "engine.store.memory",
    "TinyDBStore": "engine.store.tinydb_store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url_or_path: str | None) -> Store:
    """``None`` or ``"memory"`` gives a fresh ``MemoryStore``; anything else is a TinyDB file path."""
    if url_or_path is None or url_or_path in ("memory", "memory:", "memory://"):
        from engine.store.memory import MemoryStore

        return MemoryStore()
    from engine.store.tinydb_store import TinyDBStore

    return TinyDBStore(os.path.expanduser(url_or_path))
