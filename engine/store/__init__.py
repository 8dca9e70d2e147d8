"""Where cases, users and ledgers are kept: the ``Store`` interface and its implementations.

The implementations are imported on first use, so code that only needs the interface
(``from engine.store.base import Store``, which imports this package first) does not
pull in TinyDB or psycopg.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from engine.store.base import Doc, Predicate, Store, Transaction

if TYPE_CHECKING:
    from engine.store.memory import CorruptStoreError, MemoryStore, StoreError
    from engine.store.postgres_store import PostgresStore
    from engine.store.tinydb_store import TinyDBStore

__all__ = [
    "CorruptStoreError", "Doc", "MemoryStore", "PostgresStore", "Predicate", "Store", "StoreError",
    "TinyDBStore", "Transaction", "is_database_url", "open_store",
]

_LAZY = {
    "CorruptStoreError": "engine.store.memory",
    "MemoryStore": "engine.store.memory",
    "StoreError": "engine.store.memory",
    "TinyDBStore": "engine.store.tinydb_store",
    "PostgresStore": "engine.store.postgres_store",
}

#: URL schemes that name a PostgreSQL database (libpq accepts both).
DATABASE_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(url_or_path: str | None) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL, which ``open_store`` opens as a ``PostgresStore``."""
    return isinstance(url_or_path, str) and url_or_path.startswith(DATABASE_SCHEMES)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url_or_path: str | None) -> Store:
    """``None`` or ``"memory"`` gives a fresh ``MemoryStore``; a ``postgresql://`` URL a ``PostgresStore`` (which
    raises ``StoreError`` with one sentence when the database is unreachable or its schema behind); anything
    else is a TinyDB file path."""
    if url_or_path is None or url_or_path in ("memory", "memory:", "memory://"):
        from engine.store.memory import MemoryStore

        return MemoryStore()
    if is_database_url(url_or_path):
        from engine.store.postgres_store import PostgresStore

        return PostgresStore(url_or_path)
    from engine.store.tinydb_store import TinyDBStore

    return TinyDBStore(os.path.expanduser(url_or_path))
