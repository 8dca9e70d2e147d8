"""The storage interface the engine talks to: tables of JSON documents and serializable transactions.

Every implementation (in-memory, TinyDB file, later PostgreSQL) passes the same
tests in ``tests/test_store.py``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping, Protocol

Doc = dict[str, Any]
Predicate = Callable[[Doc], bool]
Key = Hashable


def by_id(doc: Doc) -> Any:
    return doc["id"]


@dataclass(frozen=True)
class Index:
    """A secondary index the store keeps up to date in the same transaction as every write to ``table``.

    ``keys(doc)`` says under which keys (tuples of strings and numbers) a document is found — none: not
    indexed; ``order(doc)`` sorts the documents under one key (lookups return the highest first unless asked
    otherwise). Both get the stored document and must not change it; they run on every write and when a
    store is opened, so they must be cheap and depend on the document alone.

    A file store saves each index's entries with its snapshot and reuses them when an index of the same
    ``name``, ``table`` and ``version`` is declared again after opening (instead of calling ``keys`` and
    ``order`` on every document): change ``version`` whenever ``keys`` or ``order`` change what they give.
    """

    name: str
    table: str
    keys: Callable[[Doc], Iterable[Key]]
    order: Callable[[Doc], Any] = by_id
    version: str = ""


@dataclass(frozen=True)
class Tally:
    """Sums per key the store keeps up to date with every write to ``table`` (counts are sums of 1).

    ``values(doc)`` yields ``(key, number)`` pairs; the store adds a new document's pairs and takes an old
    version's away, so a total never needs a scan. ``version``: as for :class:`Index`.
    """

    name: str
    table: str
    values: Callable[[Doc], Iterable[tuple[Key, float]]]
    version: str = ""


@dataclass
class Page:
    """One page of a lookup: the documents (copies) and how many match in all."""

    docs: list[Doc] = field(default_factory=list)
    total: int = 0


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

    def replace_many(self, table: str, docs: Iterable[Doc]) -> None:
        """:meth:`replace` of each document under its own ``"id"`` (a later one of the same id wins): a whole
        table at once (``db copy``, a restore), which a database writes in bulk. A document that cannot be
        stored raises ``TypeError``; which of the ones before it are written then differs (PostgreSQL: none)."""
        for doc in docs:
            self.replace(table, doc["id"], doc)

    @abstractmethod
    def lookup(self, index: str, keys: Iterable[Key], *, offset: int = 0, limit: int | None = None,
               newest: bool = True, where: Predicate | None = None, omit: Iterable[str] = ()) -> Page:
        """Documents found under any of ``keys`` of ``index``, each once, ordered by the index's ``order``
        (highest first when ``newest``), ``offset``/``limit`` applied after ``where``. Sees this transaction's writes.

        ``omit``: top-level keys left out of the returned copies (``where`` still sees them). A list page needs
        a case's state and data, not its history, which is most of its bytes: not copying it is most of the
        cost of a page of 50 cases."""

    def first(self, index: str, key: Key) -> Doc | None:
        """The first document under ``key`` (e.g. a user by username), or None."""
        page = self.lookup(index, [key], limit=1, newest=False)
        return page.docs[0] if page.docs else None


class LeaderLock(Protocol):
    """A lock at most one holder has at a time across every process (and host) sharing a store, lost when the
    holder's process dies; what :meth:`Store.leader_lock` gives."""

    @property
    def held(self) -> bool: ...

    def try_acquire(self) -> bool:
        """True if this object holds the lock now (it may have held it already); never waits."""
        ...

    def release(self) -> None: ...


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

    @abstractmethod
    def tables(self) -> list[str]:
        """The names of the tables holding at least one committed document, sorted.

        Backup, restore and ``civicflow db copy`` move every table through this, so a table a
        later feature adds is carried along without anyone keeping a list of names up to date.
        """

    @abstractmethod
    def add_index(self, index: Index | Tally) -> None:
        """Declare an index or a tally (built at once from what is stored, then kept up to date).
        Declaring the same name again replaces it."""

    @abstractmethod
    def lookup(self, index: str, keys: Iterable[Key], *, offset: int = 0, limit: int | None = None,
               newest: bool = True, where: Predicate | None = None, omit: Iterable[str] = ()) -> Page:
        """See :meth:`Transaction.lookup`."""

    def add_indexes(self, indexes: Iterable[Index | Tally]) -> None:
        """:meth:`add_index` for each, in order; a database builds those it lacks in one pass per table."""
        for index in indexes:
            self.add_index(index)

    def analyze(self) -> None:  # noqa: B027 - optional hook
        """Bring the statistics the store plans its queries by up to date after a bulk load (``db copy``, a
        restore, building indexes): PostgreSQL's ``VACUUM (ANALYZE)``; nothing to do for the other stores."""

    def save_indexes(self) -> None:  # noqa: B027 - optional hook
        """Keep what declaring the indexes computed, if the store can (the file store saves it with a
        compaction, so the next open restores the indexes instead of computing them from every document)."""

    @abstractmethod
    def count_keys(self, index: str, keys: Iterable[Key]) -> int:
        """How many documents are found under any of ``keys`` (each counted once)."""

    def count_groups(self, index: str, groups: Mapping[Hashable, Iterable[Key]]) -> dict[Hashable, int]:
        """:meth:`count_keys` of each group of keys (a list page's count per state), all at once: a database
        answers them in one query."""
        return {name: self.count_keys(index, keys) for name, keys in groups.items()}

    @abstractmethod
    def totals(self, tally: str) -> dict[Key, float]:
        """A copy of a tally's sums (keys whose sum went back to 0 are left out)."""

    def first(self, index: str, key: Key) -> Doc | None:
        """The first document under ``key`` (e.g. a user by username), or None."""
        page = self.lookup(index, [key], limit=1, newest=False)
        return page.docs[0] if page.docs else None

    @contextmanager
    def reading(self) -> Iterator[Iterator[tuple[str, Iterator[Doc]]]]:
        """Every table with documents and its documents in id order, all from one committed state, as
        ``(name, documents)`` pairs to consume in order inside the ``with`` block (a backup writes them as they
        come). Here: read whole in one transaction (exclusive, so no write lands half-way), then handed out; a
        database streams them from a snapshot instead, holding neither the documents nor any lock."""
        with self.transaction() as tx:
            data = [(table, tx.search(table)) for table in self.tables()]
        yield ((table, iter(docs)) for table, docs in data)

    def leader_lock(self, name: str) -> LeaderLock | None:
        """A lock named ``name`` shared by everyone using this store, wherever they run, or None when the store
        has none (a file store: its users share a host, so the caller locks a file next to it instead)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and locks."""
