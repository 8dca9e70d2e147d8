"""The storage interface the engine talks to: tables of JSON documents and serializable transactions.

Every implementation (in-memory, TinyDB file, later PostgreSQL) passes the same
tests in ``tests/test_store.py``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, Callable

Doc = dict[str, Any]
Predicate = Callable[[Doc], bool]


class Transaction(ABC):
    """Reads and writes inside one atomic, serializable unit of work.

    Reads see the transaction's own writes. Documents are plain JSON-able dicts;
    ``insert`` assigns an integer ``id`` (also stored in the document as ``"id"``).
    Nothing is visible to others, nor durable, until the ``with`` block exits
    without an exception; an exception discards every write.
    """

    @abstractmethod
    def get(self, table: str, doc_id: int) -> Doc | None: ...

    @abstractmethod
    def search(self, table: str, predicate: Predicate | None = None) -> list[Doc]: ...

    @abstractmethod
    def insert(self, table: str, doc: Doc) -> int: ...

    @abstractmethod
    def replace(self, table: str, doc_id: int, doc: Doc) -> None:
        """Store ``doc`` under ``doc_id`` (creating or overwriting it)."""

    @abstractmethod
    def delete(self, table: str, doc_id: int) -> None: ...


class Store(ABC):
    """A set of named tables. Reads return copies; writes only through ``transaction()``."""

    @abstractmethod
    def get(self, table: str, doc_id: int) -> Doc | None: ...

    @abstractmethod
    def search(self, table: str, predicate: Predicate | None = None) -> list[Doc]:
        """All documents of ``table`` (matching ``predicate`` if given), ordered by id."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """Exclusive across threads and processes sharing the store; durable on exit."""

    def count(self, table: str, predicate: Predicate | None = None) -> int:
        return len(self.search(table, predicate))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and locks."""
