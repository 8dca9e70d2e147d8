"""The machinery both stores share, and the in-memory store built from it.

Committed tables live in TinyDB's in-memory storage, in TinyDB's own JSON layout
(``{table: {str(id): doc}}``); a transaction keeps its writes in an overlay and
applies them in one step when its ``with`` block exits without an exception. A file
store may keep a committed document unparsed, as a handle (any value that is not a
dict) it turns into the document on first access (``TableStore._resolve``).
"""
from __future__ import annotations

import bisect
import heapq
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tinydb import TinyDB
from tinydb.storages import MemoryStorage

from engine.errors import EngineError
from engine.store.base import Doc, Index, Key, Page, Predicate, Store, Tally, Transaction

#: Reserved for the file store's bookkeeping (last sequence number, last ids).
META_TABLE = "_meta"

#: One committed write: ``(table, str(id), doc)``; ``doc is None`` deletes.
Op = tuple[str, str, "Doc | None"]


class StoreError(EngineError):
    """The store cannot do what was asked (unreadable file, failed write, closed store)."""


class CorruptStoreError(StoreError):
    """A store file cannot be read; the message names the file. Nothing was modified."""


def clone(value: Any) -> Any:
    """Deep copy of a JSON value (dicts, lists, scalars); about 2x faster than copy.deepcopy."""
    kind = type(value)
    if kind is dict:
        return {k: clone(v) for k, v in value.items()}
    if kind is list:
        return [clone(v) for v in value]
    return value


def normalize(doc: Mapping[str, Any], doc_id: int) -> Doc:
    """A private JSON copy of ``doc`` with ``"id"`` set, exactly as it would read back from disk.

    Going through JSON once means both stores accept the same documents and return the
    same values (tuples become lists, int keys become strings, NaN is refused).
    """
    if not isinstance(doc, Mapping):
        raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
    data = dict(doc)
    data["id"] = doc_id
    try:
        return json.loads(json.dumps(data, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"document {doc_id} is not plain JSON: {exc}") from exc


def check_table(table: str) -> str:
    if not isinstance(table, str) or not table:
        raise ValueError(f"a table name must be a non-empty string, not {table!r}")
    if table == META_TABLE:
        raise ValueError(f"the table name {META_TABLE!r} is reserved for the store itself")
    return table


def check_id(doc_id: int) -> int:
    if type(doc_id) is not int or doc_id < 1:
        raise ValueError(f"a document id must be an integer >= 1, not {doc_id!r}")
    return doc_id


Entry = tuple[Any, int]  # (order, id): what a posting list holds, ascending
_EMPTY: Mapping[str, Any] = {}


class Indexes:
    """The secondary indexes and tallies of one store, kept in memory beside the committed tables.

    An index maps each key to a posting list of ``(order, id)`` kept sorted (``bisect``), so a page of the
    newest documents under some keys is a merge of sorted lists, never a sort or a scan of the table.
    Every committed write passes through :meth:`update` (the store's own commits and, for the file store,
    other processes' journal entries alike), so the indexes always agree with the tables.
    """

    def __init__(self) -> None:
        self.specs: dict[str, Index | Tally] = {}
        self.postings: dict[str, dict[Key, list[Entry]]] = {}
        self.entries: dict[str, dict[int, tuple[Any, tuple[Key, ...]]]] = {}
        self.sums: dict[str, dict[Key, float]] = {}
        self.pairs: dict[str, dict[int, list[tuple[Key, float]]]] = {}
        #: Per index or tally restored from a file: ``(by_doc, key_table)``, what each document contributed,
        #: with keys as positions in ``key_table`` (index: ``(order, [key, ...])``; tally: ``[key, value,
        #: key, value, ...]``). Read back only when that document changes, so restoring costs no Python
        #: loop over every document; ``entries`` and ``pairs`` hold the documents written since.
        self.restored: dict[str, tuple[dict[int, Any], list[Key]]] = {}

    def of_table(self, table: str) -> list[Index | Tally]:
        return [spec for spec in self.specs.values() if spec.table == table]

    def add(self, spec: Index | Tally, docs: Iterable[tuple[str, Doc]]) -> None:
        """Build ``spec`` by calling its functions on ``docs``, ``(str(id), doc)`` pairs."""
        self.specs[spec.name] = spec
        self.restored.pop(spec.name, None)
        if isinstance(spec, Tally):
            self.sums[spec.name], self.pairs[spec.name] = {}, {}
            for key, doc in docs:
                self._tally(spec, int(key), doc)
            return
        postings: dict[Key, list[Entry]] = {}
        entries: dict[int, tuple[Any, tuple[Key, ...]]] = {}
        for key, doc in docs:
            doc_id = int(key)
            keys = tuple(dict.fromkeys(spec.keys(doc)))
            if keys:
                order = spec.order(doc)
                entries[doc_id] = (order, keys)
                for k in keys:
                    postings.setdefault(k, []).append((order, doc_id))
        for entry_list in postings.values():
            entry_list.sort()
        self.postings[spec.name], self.entries[spec.name] = postings, entries

    def restore(self, spec: Index, postings: dict[Key, list[Entry]], by_doc: dict[int, Any],
                key_table: list[Key]) -> None:
        """Install ``spec`` from saved posting lists (each sorted) and per-document entries (see ``restored``),
        without calling its functions."""
        self.specs[spec.name] = spec
        self.postings[spec.name], self.entries[spec.name] = postings, {}
        self.restored[spec.name] = (by_doc, key_table)

    def restore_tally(self, spec: Tally, sums: dict[Key, float], by_doc: dict[int, Any],
                      key_table: list[Key]) -> None:
        """Install ``spec`` from saved sums and per-document pairs (see ``restored``)."""
        self.specs[spec.name] = spec
        self.sums[spec.name], self.pairs[spec.name] = sums, {}
        self.restored[spec.name] = (by_doc, key_table)

    def entry_of(self, name: str, doc_id: int) -> tuple[Any, tuple[Key, ...]] | None:
        """The ``(order, keys)`` a document has in an index (taken out of ``restored`` if it is there)."""
        entry = self.entries[name].get(doc_id)
        if entry is None and name in self.restored:
            by_doc, key_table = self.restored[name]
            saved = by_doc.get(doc_id)
            if saved is not None:
                entry = (saved[0], tuple(key_table[i] for i in saved[1]))
        return entry

    def pairs_of(self, name: str, doc_id: int) -> list[tuple[Key, float]]:
        """The ``(key, number)`` pairs a document adds to a tally."""
        found = self.pairs[name].get(doc_id)
        if found is None and name in self.restored:
            by_doc, key_table = self.restored[name]
            flat = by_doc.get(doc_id)
            if flat is not None:
                found = [(key_table[flat[i]], flat[i + 1]) for i in range(0, len(flat), 2)]
        return found or []

    def all_pairs(self, name: str) -> dict[int, list[tuple[Key, float]]]:
        """Every document's pairs in a tally (restored ones read back), for saving."""
        found = dict(self.pairs[name])
        if name in self.restored:
            for doc_id in self.restored[name][0]:
                if doc_id not in found:
                    found[doc_id] = self.pairs_of(name, doc_id)
        return found

    def update(self, table: str, doc_id: int, doc: Doc | None) -> None:
        """``doc`` is the document's new committed version (None: deleted)."""
        for spec in self.of_table(table):
            self.update_one(spec, doc_id, doc)

    def update_one(self, spec: Index | Tally, doc_id: int, doc: Doc | None) -> None:
        if isinstance(spec, Tally):
            self._tally(spec, doc_id, doc)
            return
        postings, entries = self.postings[spec.name], self.entries[spec.name]
        old = self.entry_of(spec.name, doc_id)
        entries.pop(doc_id, None)
        if spec.name in self.restored:
            self.restored[spec.name][0].pop(doc_id, None)
        if old is not None:
            for k in old[1]:
                entry_list = postings[k]
                i = bisect.bisect_left(entry_list, (old[0], doc_id))
                if i < len(entry_list) and entry_list[i] == (old[0], doc_id):
                    del entry_list[i]
                if not entry_list:
                    del postings[k]
        if doc is None:
            return
        keys = tuple(dict.fromkeys(spec.keys(doc)))
        if keys:
            order = spec.order(doc)
            entries[doc_id] = (order, keys)
            for k in keys:
                bisect.insort(postings.setdefault(k, []), (order, doc_id))

    def _tally(self, spec: Tally, doc_id: int, doc: Doc | None) -> None:
        sums, pairs = self.sums[spec.name], self.pairs[spec.name]
        old = self.pairs_of(spec.name, doc_id)
        pairs.pop(doc_id, None)
        if spec.name in self.restored:
            self.restored[spec.name][0].pop(doc_id, None)
        for key, value in old:
            total = sums[key] - value
            if total:
                sums[key] = total
            else:
                del sums[key]
        if doc is None:
            return
        new = [(key, value) for key, value in spec.values(doc) if value]
        if new:
            pairs[doc_id] = new
            for key, value in new:
                sums[key] = sums.get(key, 0) + value

    def index(self, name: str) -> Index:
        spec = self.specs.get(name)
        if not isinstance(spec, Index):
            raise KeyError(f"no index named {name!r}")
        return spec

    def lists(self, name: str, keys: Iterable[Key]) -> list[list[Entry]]:
        postings = self.postings[self.index(name).name]
        found = []
        for k in dict.fromkeys(keys):
            entry_list = postings.get(k)
            if entry_list:
                found.append(entry_list)
        return found


def walk(lists: list[list[Entry]], newest: bool, extra: Iterable[Entry] = (), skip: Any = ()) -> Iterator[int]:
    """Ids from sorted posting lists (and ``extra`` entries), in order, each once; ids in ``skip`` are left
    out of ``lists`` (a transaction's pending versions replace them, and come as ``extra``)."""
    sources: list[Iterable[Entry]] = [reversed(lst) if newest else lst for lst in lists]
    if skip:
        sources = [(e for e in source if e[1] not in skip) for source in sources]
    extra = sorted(extra, reverse=newest)
    if extra:
        sources.append(extra)
    if len(sources) == 1:
        for _order, doc_id in sources[0]:
            yield doc_id
        return
    seen: set[int] = set()
    for _order, doc_id in heapq.merge(*sources, reverse=newest):
        if doc_id not in seen:
            seen.add(doc_id)
            yield doc_id


def page_of(ids: Iterator[int], fetch: Any, offset: int, limit: int | None, where: Predicate | None,
            total: int | None, omit: Iterable[str] = ()) -> Page:
    """Apply ``where``, ``offset`` and ``limit`` to ids in order; ``total`` if already known (no ``where``);
    copies leave out the top-level keys in ``omit``."""
    docs: list[Doc] = []
    skipped = frozenset(omit)
    copy = clone if not skipped else (lambda d: {k: clone(v) for k, v in d.items() if k not in skipped})
    end = None if limit is None else offset + limit
    count = 0
    for doc_id in ids:
        doc = fetch(doc_id)
        if doc is None or (where is not None and not where(doc.copy())):
            continue
        if count >= offset and (end is None or count < end):
            docs.append(copy(doc))
        count += 1
        if total is not None and end is not None and count >= end:
            break
    return Page(docs, count if total is None else total)


class TableStore(Store):
    """Committed tables in TinyDB's ``MemoryStorage`` plus serializable overlay transactions.

    Locking: ``_tx_lock`` (an RLock) is held for the whole of a transaction, so one
    runs at a time across threads; ``_state_lock`` is held only briefly, to read or
    apply committed state. Subclasses add persistence through the ``_refresh``,
    ``_begin_write``, ``_end_write``, ``_persist`` and ``_after_commit`` hooks.

    Nested ``transaction()`` blocks on the same thread join the outer transaction
    (they yield the same ``Transaction``): their writes become visible and durable
    only when the outermost block exits. An inner block that raises discards the
    writes made inside it, like an SQL savepoint, and the outer block may catch the
    exception and go on. Store-level reads on a thread inside a transaction go
    through that transaction, so they see its writes.

    Predicates get a shallow copy of each stored document: changing its top-level keys
    cannot reach the store, but nested values are shared, so a predicate must not
    mutate them (a deep copy of every document tested would make a search about 5x
    slower). Results are always deep copies.
    """

    def __init__(self) -> None:
        self._tx_lock = threading.RLock()
        self._state_lock = threading.RLock()
        self._local = threading.local()
        self._closed = False
        self._indexes = Indexes()
        self._reset_state({})

    # -- committed state ---------------------------------------------------------

    def _reset_state(self, tables: dict[str, dict[str, Doc]], last_ids: Mapping[str, int] = {}) -> None:
        """Replace all committed state (used at creation and when reloading a file)."""
        self._db = TinyDB(storage=MemoryStorage)
        self._db.storage.write(tables)
        #: Highest id ever used per table, so a deleted id is never handed out again.
        self._last_ids: dict[str, int] = dict(last_ids)
        #: Tables whose dict is not in ascending id order (sorted lazily by the next search).
        self._unsorted: set[str] = set()
        for name, table in tables.items():
            previous = 0
            for key in table:
                number = int(key)
                if number < previous:
                    self._unsorted.add(name)
                previous = max(previous, number)
            self._last_ids[name] = max(self._last_ids.get(name, 0), previous)
        for spec in list(self._indexes.specs.values()):
            self._build_index(spec)

    def _build_index(self, spec: Index | Tally) -> None:
        """Build one declared index from the committed table (``_state_lock`` held)."""
        self._indexes.add(spec, self._docs(spec.table))

    def _resolve(self, table: str, key: str, handle: Any) -> Doc:
        """The document behind a handle a subclass left in a committed table (``_state_lock`` held)."""
        raise StoreError(f"{table}/{key}: no document behind {handle!r}")

    def _doc(self, table: str, key: str) -> Doc | None:
        """The committed (stored, not copied) document, or None (``_state_lock`` held)."""
        value = self._tables.get(table, _EMPTY).get(key)
        if value is None or type(value) is dict:
            return value
        return self._resolve(table, key, value)

    def _docs(self, table: str, items: Iterable[tuple[str, Any]] | None = None) -> Iterator[tuple[str, Doc]]:
        """``(str(id), stored document)`` of ``items`` (default: the whole committed table, in dict order)."""
        if items is None:
            items = self._tables.get(table, _EMPTY).items()
        resolve = self._resolve
        for key, value in items:
            yield key, (value if type(value) is dict else resolve(table, key, value))

    @property
    def _tables(self) -> dict[str, dict[str, Doc]]:
        return self._db.storage.memory

    def _apply(self, ops: list[Op]) -> None:
        """Apply committed writes straight to the storage dict: O(1) per write.

        ``Table.insert`` would rebuild the whole table dict on every call (O(n)).
        """
        tables = self._tables
        touched = set()
        for name, key, doc in ops:
            table = tables.get(name)
            if doc is None:
                if table is not None and table.pop(key, None) is not None:
                    touched.add(name)
                    self._indexes.update(name, int(key), None)
                continue
            if table is None:
                table = tables[name] = {}
            number = int(key)
            last = self._last_ids.get(name, 0)
            if number < last and key not in table:
                self._unsorted.add(name)
            if number > last:
                self._last_ids[name] = number
            table[key] = doc
            touched.add(name)
            self._indexes.update(name, number, doc)
        for name in touched:
            # Nothing here reads through TinyDB's Table API, but anyone who does must
            # not get query results cached before this write.
            self._db.table(name).clear_cache()

    def _committed(self, table: str) -> dict[str, Doc]:
        """The committed table in ascending id order (caller holds ``_state_lock``)."""
        docs = self._tables.get(table)
        if docs is None:
            return {}
        if table in self._unsorted:
            docs = self._tables[table] = dict(sorted(docs.items(), key=lambda kv: int(kv[0])))
            self._unsorted.discard(table)
        return docs

    # -- hooks for persistence (no-ops in memory) --------------------------------

    def _refresh(self) -> None:
        """Catch up with writes made by other processes (``_state_lock`` held)."""

    def _begin_write(self) -> None:
        """Take whatever exclusive lock a transaction needs beyond ``_tx_lock``."""

    def _end_write(self) -> None:
        """Release what ``_begin_write`` took."""

    def _persist(self, ops: list[Op]) -> None:
        """Make ``ops`` durable before they are applied; raise if that fails."""

    def _after_commit(self) -> None:
        """Housekeeping after a commit was applied (the file store compacts here)."""

    # -- the Store interface -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def _current(self) -> OverlayTransaction | None:
        return getattr(self._local, "tx", None)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._state_lock:
            self._check_open()
            self._refresh()
            yield

    def get(self, table: str, doc_id: int) -> Doc | None:
        tx = self._current()
        if tx is not None:
            return tx.get(table, doc_id)
        check_table(table)
        check_id(doc_id)
        with self._reading():
            doc = self._doc(table, str(doc_id))
            return None if doc is None else clone(doc)

    def search(self, table: str, predicate: Predicate | None = None) -> list[Doc]:
        """All documents of ``table`` (matching ``predicate`` if given), ordered by id."""
        tx = self._current()
        if tx is not None:
            return tx.search(table, predicate)
        check_table(table)
        with self._reading():
            docs = (d for _k, d in self._docs(table, self._committed(table).items()))
            if predicate is None:
                return [clone(d) for d in docs]
            return [clone(d) for d in docs if predicate(d.copy())]

    def count(self, table: str, predicate: Predicate | None = None) -> int:
        tx = self._current()
        if tx is not None:
            return tx.count(table, predicate)
        check_table(table)
        with self._reading():
            if predicate is None:
                return len(self._tables.get(table, _EMPTY))
            return sum(1 for _k, d in self._docs(table) if predicate(d.copy()))

    def tables(self) -> list[str]:
        with self._reading():
            return sorted(name for name, docs in self._tables.items() if docs and name != META_TABLE)

    # -- indexes ---------------------------------------------------------------

    def add_index(self, index: Index | Tally) -> None:
        with self._reading():
            check_table(index.table)
            self._build_index(index)

    def lookup(self, index: str, keys: Iterable[Key], *, offset: int = 0, limit: int | None = None,
               newest: bool = True, where: Predicate | None = None, omit: Iterable[str] = ()) -> Page:
        tx = self._current()
        if tx is not None:
            return tx.lookup(index, keys, offset=offset, limit=limit, newest=newest, where=where, omit=omit)
        with self._reading():
            spec = self._indexes.index(index)
            lists = self._indexes.lists(index, keys)
            total = None
            if where is None:
                total = len(lists[0]) if len(lists) == 1 else len({i for lst in lists for _o, i in lst})
            return page_of(walk(lists, newest), lambda i: self._doc(spec.table, str(i)), offset, limit, where, total,
                           omit)

    def count_keys(self, index: str, keys: Iterable[Key]) -> int:
        tx = self._current()
        if tx is not None:
            return tx.lookup(index, keys, limit=0).total
        with self._reading():
            lists = self._indexes.lists(index, keys)
            return len(lists[0]) if len(lists) == 1 else len({i for lst in lists for _o, i in lst})

    def totals(self, tally: str) -> dict[Key, float]:
        with self._reading():
            if tally not in self._indexes.sums:
                raise KeyError(f"no tally named {tally!r}")
            return dict(self._indexes.sums[tally])

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Exclusive across threads and processes sharing the store; durable on exit.

        Re-entrant: a nested call on the same thread joins the outer transaction
        (see the class docstring for what an exception in an inner block does).
        """
        outer = self._current()
        if outer is not None:
            mark = outer._savepoint()
            try:
                yield outer
            except BaseException:
                outer._rollback_to(mark)
                raise
            return
        with self._tx_lock:
            self._check_open()
            self._begin_write()
            tx = OverlayTransaction(self)
            self._local.tx = tx
            try:
                try:
                    yield tx
                finally:
                    self._local.tx = None
                    ops = tx._finish()
                # Reached only when the block did not raise.
                if ops:
                    with self._state_lock:
                        self._check_open()
                        self._persist(ops)
                        self._apply(ops)
                        self._after_commit()
            finally:
                self._end_write()

    def close(self) -> None:
        """Release files and locks. Waits for a running transaction to finish."""
        with self._tx_lock, self._state_lock:
            self._closed = True

    def __enter__(self) -> TableStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class OverlayTransaction(Transaction):
    """Pending writes kept apart from the committed tables until the block exits."""

    def __init__(self, store: TableStore) -> None:
        self._store = store
        #: table -> str(id) -> new document, or None for a deletion.
        self._writes: dict[str, dict[str, Doc | None]] = {}
        self._last_ids: dict[str, int] = {}
        self._active = True

    def _check(self, table: str) -> str:
        if not self._active:
            raise StoreError("this transaction has ended; start a new one with store.transaction()")
        return check_table(table)

    def get(self, table: str, doc_id: int) -> Doc | None:
        pending = self._writes.get(self._check(table), {})
        key = str(check_id(doc_id))
        if key in pending:
            doc = pending[key]
        else:
            with self._store._state_lock:
                doc = self._store._doc(table, key)
        return None if doc is None else clone(doc)

    def _matching(self, table: str, predicate: Predicate | None) -> list[Doc]:
        """Stored (not copied) documents visible to this transaction, ordered by id."""
        pending = self._writes.get(self._check(table), {})
        keep = (lambda d: True) if predicate is None else (lambda d: predicate(d.copy()))
        with self._store._state_lock:
            items = self._store._committed(table).items()
            if pending:
                items = [(k, v) for k, v in items if k not in pending]
            committed = self._store._docs(table, items)
            if not pending:
                return [d for _k, d in committed if keep(d)]
            found = [(int(k), d) for k, d in committed if keep(d)]
        found += [(int(k), d) for k, d in pending.items() if d is not None and keep(d)]
        found.sort(key=lambda pair: pair[0])
        return [d for _, d in found]

    def search(self, table: str, predicate: Predicate | None = None) -> list[Doc]:
        return [clone(d) for d in self._matching(table, predicate)]

    def count(self, table: str, predicate: Predicate | None = None) -> int:
        return len(self._matching(table, predicate))

    def lookup(self, index: str, keys: Iterable[Key], *, offset: int = 0, limit: int | None = None,
               newest: bool = True, where: Predicate | None = None, omit: Iterable[str] = ()) -> Page:
        wanted = list(dict.fromkeys(keys))
        with self._store._state_lock:
            indexes = self._store._indexes
            spec = indexes.index(index)
            pending = self._writes.get(self._check(spec.table), {})
            skip = {int(k) for k in pending}
            extra = []
            for k, doc in pending.items():
                if doc is not None and set(spec.keys(doc)) & set(wanted):
                    extra.append((spec.order(doc), int(k)))
            def fetch(doc_id: int) -> Doc | None:
                key = str(doc_id)
                return pending[key] if key in pending else self._store._doc(spec.table, key)

            ids = walk(indexes.lists(index, wanted), newest, extra, skip)
            return page_of(ids, fetch, offset, limit, where, None, omit)

    def _bump(self, table: str, doc_id: int) -> None:
        last = self._last_ids.get(table)
        if last is None:
            last = self._store._last_ids.get(table, 0)
        self._last_ids[table] = max(last, doc_id)

    def insert(self, table: str, doc: Doc) -> int:
        """Store a copy of ``doc`` under the next id of ``table`` (highest id ever used + 1)."""
        self._check(table)
        self._bump(table, 0)
        doc_id = self._last_ids[table] + 1
        self._writes.setdefault(table, {})[str(doc_id)] = normalize(doc, doc_id)
        self._last_ids[table] = doc_id
        return doc_id

    def replace(self, table: str, doc_id: int, doc: Doc) -> None:
        """Store a copy of ``doc`` under ``doc_id`` (creating or overwriting it); sets ``"id"``."""
        self._check(table)
        stored = normalize(doc, check_id(doc_id))
        self._writes.setdefault(table, {})[str(doc_id)] = stored
        self._bump(table, doc_id)

    def delete(self, table: str, doc_id: int) -> None:
        """Remove the document; deleting one that does not exist is a no-op."""
        self._check(table)
        self._writes.setdefault(table, {})[str(check_id(doc_id))] = None

    # -- used by TableStore.transaction ------------------------------------------

    def _savepoint(self) -> tuple[dict[str, dict[str, Doc | None]], dict[str, int]]:
        # Pending documents are never mutated in place, so shallow copies suffice.
        return {t: dict(w) for t, w in self._writes.items()}, dict(self._last_ids)

    def _rollback_to(self, mark: tuple[dict[str, dict[str, Doc | None]], dict[str, int]]) -> None:
        self._writes, self._last_ids = mark[0], mark[1]

    def _finish(self) -> list[Op]:
        """End the transaction and hand its writes over (ownership passes to the store)."""
        self._active = False
        ops = [(t, k, d) for t, writes in self._writes.items() for k, d in writes.items()]
        self._writes = {}
        return ops


class MemoryStore(TableStore):
    """A store that lives only as long as the process: for tests and demos."""
