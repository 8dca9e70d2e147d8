"""A store in a PostgreSQL database (psycopg 3), shared by many threads, processes and hosts.

Design:

- **Documents** are rows of one table, ``cf_docs (tbl, id, doc jsonb)``: the logical table's name, the id,
  the document. Ids are handed out per logical table from ``cf_last_ids`` (the highest id ever used, bumped
  by inserts and by replaces with a higher id), so, as in the other stores, a deleted id is never reused and
  an id taken by a transaction that rolled back is free again. JSONB does not keep the order of an object's
  keys (JSON objects are unordered; Civicflow compares and hashes documents with sorted keys), keeps
  numbers as ``numeric`` (a float of 1e16 or more reads back as the equal integer), and cannot hold the
  character U+0000, which is refused with a clear error.
- **A transaction is one database transaction** (READ COMMITTED) that first takes
  ``pg_advisory_xact_lock(WRITE_LOCK)``: writers queue on that lock, across threads, processes and hosts,
  exactly as they queue on the file store's ``flock``, and it is released by the commit or rollback itself
  (also when a client dies). Each statement after the lock sees every transaction committed before it, so
  transactions run one after another and two requests can never both win the same transition or claim, or
  overdraw a points balance. Why not SERIALIZABLE and retry: every caller (transitions with their
  before/after actions, ledgers) would have to be safe to run twice, serialisation failures would appear
  under exactly the load where they hurt, and the store's contract is already "exclusive"; the engine's
  transactions are short, so one queue costs less than retries. (READ COMMITTED, not REPEATABLE READ: a
  repeatable-read snapshot would be taken by the lock statement, i.e. before the previous writer committed.)
  Reads outside a transaction take no lock: one statement sees one committed state, and reads made of
  several statements (a page and its total) run in a READ ONLY REPEATABLE READ transaction.
- **Indexes and tallies** are rows kept in the same transaction as each write, queried in SQL
  (``engine.store.pg_indexes``). Which are built, at which version, is in ``cf_indexes``: declaring an
  index again with the same name, table and version (a restart) reuses its rows; another version rebuilds
  it in one transaction. A write to a table with a built index this process has not declared marks that
  index stale (it cannot keep it), so the next declaration rebuilds it instead of trusting old rows: every
  process writing to a database must declare the same indexes (Civicflow's ``Engine`` always does).
- **Queries are SQL**: a lookup's ``where`` that is a :class:`~engine.store.conditions.Condition` (the list
  pages' filters) is translated into SQL over the JSONB documents (``engine.store.pg_conditions``), so the
  database filters, counts and pages; only an arbitrary Python predicate is still streamed through Python.
  ``count_groups`` (a list's count per state) is one ``GROUP BY``; ``totals`` keeps a tally per process until
  its ``serial`` (bumped in the statement that changes its sums) moves.
- **Bulk loads**: ``replace_many`` (``db copy``, a restore) writes a table with ``COPY`` and one upsert;
  ``add_indexes`` builds every stale index of a table in one pass; both are followed by ``VACUUM (ANALYZE)``
  (:meth:`PostgresStore.analyze`), since a planner without statistics scans every document for a list.
- **Connections**: a small pool (at most ``pool_size`` idle connections kept; more are opened while many
  threads work at once), so each thread of a threaded server (waitress) borrows one per read or transaction.
  A process forked with connections open (gunicorn ``--preload``) forgets the inherited ones in the child
  without closing them (closing would end the parent's sessions) and opens its own.
- **Schema**: versioned migrations (``engine.store.pg_migrations``) applied by ``civicflow db upgrade``;
  opening a store checks the version and stops with one sentence saying what to run.
"""
from __future__ import annotations

import json
import os
import threading
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads

from engine.store import pg_conditions, pg_indexes as pgi
from engine.store import pg_migrations
from engine.store.conditions import Condition
from engine.store.base import Doc, Index, Key, Page, Predicate, Store, Tally, Transaction
from engine.store.fileformat import loads_doc
from engine.store.memory import StoreError, check_id, check_table

#: The advisory lock every write transaction holds (any constant; "Civi").
WRITE_LOCK = 0x43697669
#: The first key of every leader lock (``pg_try_advisory_lock(int, int)``: a key space apart from WRITE_LOCK's).
LEADER_LOCKS = 0x4C656164  # "Lead"
_STREAM_ROWS = 500


def describe(url: str) -> str:
    """``user@host:port/dbname`` of a connection URL, without its password, for messages."""
    try:
        info = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable database URL)"
    host = info.get("host") or "localhost"
    user = f"{info['user']}@" if info.get("user") else ""
    return f"{user}{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection, or :class:`StoreError` naming the database (never the password)."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot reach the database {describe(url)}: {reason}") from exc
    set_json_loads(loads_doc, conn)
    return conn


def encode_doc(doc: Any, doc_id: int) -> tuple[Doc, str]:
    """A private copy of ``doc`` with ``"id"`` set, as it will read back, and its JSON text."""
    text = encode_text(doc, doc_id)
    return json.loads(text), text


def encode_text(doc: Any, doc_id: int) -> str:
    """The JSON text of ``doc`` with ``"id"`` set, or ``TypeError`` saying why it cannot be stored."""
    if not isinstance(doc, dict):
        raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
    data = dict(doc)
    data["id"] = doc_id
    try:
        text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"document {doc_id} is not plain JSON: {exc}") from exc
    if "\\u0000" in text and _has_nul(data):
        raise TypeError(f"document {doc_id} holds the character U+0000, which PostgreSQL cannot store")
    return text


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


class _Pool:
    """Idle connections to reuse; one per borrower at a time. Safe across ``fork`` (see the module docstring)."""

    _all: "weakref.WeakSet[_Pool]" = weakref.WeakSet()

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size = url, size
        self._idle: list[psycopg.Connection[Any]] = []
        self._mine: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()  # opened by this process
        self._lock = threading.Lock()
        _Pool._all.add(self)

    def get(self) -> psycopg.Connection[Any]:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and not conn.broken:
                    return conn
        conn = connect(self.url)
        self._mine.add(conn)
        return conn

    def put(self, conn: psycopg.Connection[Any], closed: bool) -> None:
        if conn not in self._mine:
            return  # borrowed before a fork: the parent's, neither reused nor closed here
        reusable = (not closed and not conn.closed and not conn.broken
                    and conn.info.transaction_status == TransactionStatus.IDLE)
        if reusable:
            with self._lock:
                if len(self._idle) < self.size:
                    self._idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @classmethod
    def _after_fork(cls) -> None:
        """In a forked child: forget every inherited connection, so the child neither uses nor closes the
        parent's sessions (psycopg does not end another process's connections when collecting them)."""
        for pool in list(cls._all):
            pool._idle = []
            pool._mine = weakref.WeakSet()
            pool._lock = threading.Lock()


os.register_at_fork(after_in_child=_Pool._after_fork)


@contextmanager
def database_errors() -> Iterator[None]:
    """Database failures (connection lost, server down) as :class:`StoreError`, one sentence each."""
    try:
        yield
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()
        raise StoreError(f"the database failed: {text[0] if text else type(exc).__name__}") from exc


class PostgresStore(Store):
    """Tables of JSON documents in PostgreSQL; see the module docstring for the design.

    As with the file store, nested ``transaction()`` blocks on one thread join the outer one, and store-level
    reads (``totals`` too) on a thread inside a transaction go through it; two store objects on one database
    are like two processes, so a transaction on one inside a transaction on the other, on one thread, waits
    for the write lock forever.
    """

    def __init__(self, url: str, *, pool_size: int = 16, check_schema: bool = True) -> None:
        self.url = url
        self._pool = _Pool(url, pool_size)
        self._local = threading.local()
        self._specs: dict[str, Index | Tally] = {}
        #: Per tally: its sums as last read and the ``(serial, xmin)`` of its ``cf_indexes`` row then.
        self._tallies: dict[str, tuple[Any, dict[Key, float]]] = {}
        self._closed = False
        conn = self._pool.get()
        try:
            with database_errors():
                if check_schema:
                    pg_migrations.check(conn)
                icu = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = %s)",
                                   (pg_conditions.ICU,)).fetchone()[0]
            #: The collation conditions lower text with (``engine.store.pg_conditions``).
            self.lower_collation: str | None = pg_conditions.ICU if icu else None
        finally:
            self._pool.put(conn, False)

    def __repr__(self) -> str:
        return f"PostgresStore({describe(self.url)!r})"

    # -- connections ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def _current(self) -> PgTransaction | None:
        return getattr(self._local, "tx", None)

    @contextmanager
    def _conn(self, snapshot: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; ``snapshot``: inside a READ ONLY REPEATABLE READ transaction (several
        statements that must agree, or a server-side cursor)."""
        self._check_open()
        conn = self._pool.get()
        try:
            with database_errors():
                if snapshot:
                    with conn.transaction():
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        yield conn
                else:
                    yield conn
        finally:
            self._pool.put(conn, self._closed)

    def specs_of(self, table: str) -> list[Index | Tally]:
        return [spec for spec in self._specs.values() if spec.table == table]

    def _index(self, name: str) -> Index:
        spec = self._specs.get(name)
        if not isinstance(spec, Index):
            raise KeyError(f"no index named {name!r}")
        return spec

    # -- reads ----------------------------------------------------------------------------

    def get(self, table: str, doc_id: int) -> Doc | None:
        tx = self._current()
        if tx is not None:
            return tx.get(table, doc_id)
        check_table(table)
        check_id(doc_id)
        with self._conn() as conn:
            return _get(conn, table, doc_id)

    def search(self, table: str, predicate: Predicate | None = None) -> list[Doc]:
        """All documents of ``table`` (matching ``predicate`` if given), ordered by id."""
        tx = self._current()
        if tx is not None:
            return tx.search(table, predicate)
        check_table(table)
        streamed = predicate is not None and not isinstance(predicate, Condition)
        with self._conn(snapshot=streamed) as conn:
            return _search(conn, table, predicate, self.lower_collation)

    def count(self, table: str, predicate: Predicate | None = None) -> int:
        tx = self._current()
        if tx is not None:
            return tx.count(table, predicate)
        check_table(table)
        if predicate is not None and not isinstance(predicate, Condition):
            return len(self.search(table, predicate))
        with self._conn() as conn:
            return _count(conn, table, predicate, self.lower_collation)

    def tables(self) -> list[str]:
        """The names of the tables that hold documents, sorted."""
        with self._conn() as conn:
            return [row[0] for row in conn.execute("SELECT DISTINCT tbl FROM cf_docs ORDER BY tbl")]

    def lookup(self, index: str, keys: Any, *, offset: int = 0, limit: int | None = None,
               newest: bool = True, where: Predicate | None = None, omit: Any = ()) -> Page:
        tx = self._current()
        if tx is not None:
            return tx.lookup(index, keys, offset=offset, limit=limit, newest=newest, where=where, omit=omit)
        spec = self._index(index)
        streamed = where is not None and not isinstance(where, Condition)
        with self._conn(snapshot=streamed) as conn:  # a streamed lookup needs its cursor's transaction
            return _lookup(conn, spec, keys, offset, limit, newest, where, omit, self.lower_collation)

    def count_keys(self, index: str, keys: Any) -> int:
        tx = self._current()
        if tx is not None:
            return tx.lookup(index, keys, limit=0).total
        spec = self._index(index)
        with self._conn() as conn:
            return _count_keys(conn, spec, keys)

    def count_groups(self, index: str, groups: Any) -> dict[Any, int]:
        """One ``GROUP BY`` query for every group (outside a transaction)."""
        if self._current() is not None:
            return super().count_groups(index, groups)
        spec = self._index(index)
        names = list(groups)
        numbers: list[int] = []
        keys: list[str] = []
        for n, name in enumerate(names):
            for key in dict.fromkeys(pgi.encode_key(k) for k in groups[name]):
                numbers.append(n)
                keys.append(key)
        found = {name: 0 for name in names}
        if keys:
            with self._conn() as conn:
                for n, count in conn.execute(pgi.group_count_sql(), {"idx": spec.name, "groups": numbers, "keys": keys}):
                    found[names[n]] = count
        return found

    def totals(self, tally: str) -> dict[Key, float]:
        """A tally's sums. Outside a transaction, the sums this process read last time while no write changed
        them since (one short query checks the tally's ``serial``, bumped by every change of its sums, and its
        row's ``xmin``, so a database recreated under the same URL is not mistaken for the old one)."""
        if not isinstance(self._specs.get(tally), Tally):
            raise KeyError(f"no tally named {tally!r}")
        tx = self._current()
        if tx is not None:  # its own writes, maybe rolled back later: never kept
            return _totals(tx._conn, tally)
        with self._conn() as conn:
            stamp = conn.execute("SELECT serial, xmin::text FROM cf_indexes WHERE name = %s", (tally,)).fetchone()
            kept = self._tallies.get(tally)
            if kept is not None and stamp is not None and kept[0] == tuple(stamp):
                return dict(kept[1])
            rows = conn.execute(
                "SELECT i.serial, i.xmin::text, s.key, s.total FROM cf_indexes i LEFT JOIN cf_tally_sums s "
                "ON s.tally = i.name AND s.total <> 0 WHERE i.name = %s", (tally,)).fetchall()
        sums = {pgi.decode_key(key): pgi.number(total) for _s, _x, key, total in rows if key is not None}
        if rows:
            self._tallies[tally] = ((rows[0][0], rows[0][1]), sums)
        return dict(sums)

    # -- indexes --------------------------------------------------------------------------

    def add_index(self, index: Index | Tally) -> None:
        """Declare an index or tally: reuse its rows if this name, table, kind and version are built, else
        build it from every document of its table, in one transaction."""
        self.add_indexes([index])

    def add_indexes(self, indexes: Any) -> None:
        """Declare several in one transaction: those not built at their version are built together, one pass
        over the documents of each table (so a first start reads and parses each case once, not once per
        index), then the planner's statistics are refreshed (:meth:`analyze`)."""
        wanted = list(indexes)
        for index in wanted:
            check_table(index.table)
        with self.transaction() as tx:
            conn = tx._conn
            built = {name: (tbl, kind, version) for name, tbl, kind, version in conn.execute(
                "SELECT name, tbl, kind, version FROM cf_indexes WHERE name = ANY(%s)", ([i.name for i in wanted],))}
            stale = {i.name: i for i in wanted if built.get(i.name) != (i.table, _kind(i), i.version)}
            for table in dict.fromkeys(i.table for i in stale.values()):
                pgi.rebuild_many(conn, [i for i in stale.values() if i.table == table])
            for index in stale.values():
                conn.execute("INSERT INTO cf_indexes (name, tbl, kind, version) VALUES (%s, %s, %s, %s) "
                             "ON CONFLICT (name) DO UPDATE SET tbl = excluded.tbl, kind = excluded.kind, "
                             "version = excluded.version, serial = cf_indexes.serial + 1",
                             (index.name, index.table, _kind(index), index.version))
        for index in wanted:  # only once built: a failed build leaves the old declarations
            self._specs[index.name] = index
        if stale:
            self.analyze()

    def analyze(self) -> None:
        """``VACUUM (ANALYZE)`` the store's tables: fresh statistics (without them, right after a bulk load, the
        planner guesses a filtered list is one row and scans every document) and a visibility map, so lookups
        are index-only scans of ``cf_entries``. Outside a transaction (VACUUM cannot run in one)."""
        if self._current() is not None:
            return
        with self._conn() as conn:
            conn.execute("VACUUM (ANALYZE) cf_docs, cf_last_ids, cf_indexes, cf_entries, cf_tally_docs, cf_tally_sums")

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One database transaction holding the write lock (see the module docstring); nested blocks on the
        same thread join it as savepoints (an exception in one discards only its writes)."""
        outer = self._current()
        if outer is not None:
            with database_errors(), outer._conn.transaction():
                yield outer
            return
        self._check_open()
        conn = self._pool.get()
        tx = PgTransaction(self, conn)
        try:
            with database_errors(), conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                self._local.tx = tx
                try:
                    yield tx
                finally:
                    self._local.tx = None
                    tx._active = False
                tx._before_commit()
        finally:
            self._pool.put(conn, self._closed)

    @contextmanager
    def reading(self) -> Iterator[Iterator[tuple[str, Iterator[Doc]]]]:
        """Every table's documents streamed from one READ ONLY REPEATABLE READ snapshot (server-side cursors,
        ``_STREAM_ROWS`` at a time): a consistent state, since each writer commits whole, while writers go on
        (no write lock is taken) and this process holds a few hundred documents at a time, not the database."""
        with self._conn(snapshot=True) as conn:
            names = [row[0] for row in conn.execute("SELECT DISTINCT tbl FROM cf_docs ORDER BY tbl")]
            yield ((name, _stream(conn, "SELECT doc FROM cf_docs WHERE tbl = %s ORDER BY id", (name,)))
                   for name in names)

    def leader_lock(self, name: str) -> PgLeaderLock:
        return PgLeaderLock(self.url, name)

    def close(self) -> None:
        """Close the pooled connections; later use raises ``StoreError``."""
        self._closed = True
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _kind(index: Index | Tally) -> str:
    return "tally" if isinstance(index, Tally) else "index"


class PgLeaderLock:
    """A session-level advisory lock held on a connection of its own for as long as this object leads.

    The server drops a session's advisory locks when the session ends, so a leader whose process dies, or
    whose host goes away (once the server's TCP keepalive notices; this session asks for about a minute),
    hands over by itself. Every :meth:`try_acquire` while holding runs one statement on the held connection:
    if the session was lost (server restart, ``pg_terminate_backend``), the lock was lost with it, so this
    object steps down and competes again instead of believing it still leads. The session's
    ``application_name`` names the holder's pid, for a person looking at ``pg_stat_activity``.
    """

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.key = zlib.crc32(name.encode()) - (1 << 31)  # a stable int4 (hash() differs per process)
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"PgLeaderLock({self.name!r} on {describe(self.url)})"

    @property
    def held(self) -> bool:
        return self._conn is not None and self._pid == os.getpid()

    def try_acquire(self) -> bool:
        if self._conn is not None and self._pid != os.getpid():
            self._conn = None  # inherited across a fork: the session (and the lock) is the parent's
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return True
            except psycopg.Error:
                self.release()
        self._pid = os.getpid()
        conn = connect(self.url)
        try:
            with database_errors():
                conn.execute("SELECT set_config('application_name', %s, false), "
                              "set_config('tcp_keepalives_idle', '30', false), "
                              "set_config('tcp_keepalives_interval', '10', false), "
                              "set_config('tcp_keepalives_count', '3', false)",
                              (f"civicflow {self.name} leader pid {os.getpid()}"[:63],))
                row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LEADER_LOCKS, self.key)).fetchone()
        except BaseException:
            conn.close()
            raise
        if not (row and row[0]):
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        """Give the lock up: closing the session drops it (an unlock first would only cost a round trip)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass


class PgTransaction(Transaction):
    """Reads and writes on the connection of one database transaction (see ``PostgresStore.transaction``)."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any]) -> None:
        self._store = store
        self._conn = conn
        self._active = True
        self._written: set[str] = set()
        #: Per table written: its highest id before this transaction (see ``_before_commit``).
        self._first_ids: dict[str, int] = {}
        self._maintain = pgi.Maintenance(store.specs_of)

    def _check(self, table: str) -> str:
        if not self._active:
            raise StoreError("this transaction has ended; start a new one with store.transaction()")
        return check_table(table)

    def get(self, table: str, doc_id: int) -> Doc | None:
        self._check(table)
        with database_errors():
            return _get(self._conn, table, check_id(doc_id))

    def search(self, table: str, predicate: Predicate | None = None) -> list[Doc]:
        self._check(table)
        with database_errors():
            return _search(self._conn, table, predicate, self._store.lower_collation)

    def count(self, table: str, predicate: Predicate | None = None) -> int:
        if predicate is not None and not isinstance(predicate, Condition):
            return len(self.search(table, predicate))
        self._check(table)
        with database_errors():
            return _count(self._conn, table, predicate, self._store.lower_collation)

    def lookup(self, index: str, keys: Any, *, offset: int = 0, limit: int | None = None,
               newest: bool = True, where: Predicate | None = None, omit: Any = ()) -> Page:
        spec = self._store._index(index)
        self._check(spec.table)
        with database_errors():
            return _lookup(self._conn, spec, keys, offset, limit, newest, where, omit, self._store.lower_collation)

    def insert(self, table: str, doc: Doc) -> int:
        """Store a copy of ``doc`` under the next id of ``table`` (highest id ever used + 1)."""
        self._check(table)
        with database_errors():
            doc_id, before = self._conn.execute(
                "WITH old AS (SELECT last_id FROM cf_last_ids WHERE tbl = %s) "
                "INSERT INTO cf_last_ids (tbl, last_id) VALUES (%s, 1) ON CONFLICT (tbl) "
                "DO UPDATE SET last_id = cf_last_ids.last_id + 1 RETURNING last_id, (SELECT last_id FROM old)",
                (table, table)).fetchone()
            self._first_ids.setdefault(table, before or 0)
            stored, text = encode_doc(doc, doc_id)
            self._write(table, doc_id, stored, "INSERT INTO cf_docs (tbl, id, doc) VALUES (%s, %s, %s::jsonb)",
                        (table, doc_id, text), fresh=True)
        return doc_id

    def replace(self, table: str, doc_id: int, doc: Doc) -> None:
        """Store a copy of ``doc`` under ``doc_id`` (creating or overwriting it); sets ``"id"``."""
        self._check(table)
        stored, text = encode_doc(doc, check_id(doc_id))
        with database_errors():
            before = self._conn.execute(
                "WITH old AS (SELECT last_id FROM cf_last_ids WHERE tbl = %s) "
                "INSERT INTO cf_last_ids (tbl, last_id) VALUES (%s, %s) ON CONFLICT (tbl) "
                "DO UPDATE SET last_id = greatest(cf_last_ids.last_id, excluded.last_id) "
                "RETURNING (SELECT last_id FROM old)", (table, table, doc_id)).fetchone()[0]
            self._first_ids.setdefault(table, before or 0)
            self._write(table, doc_id, stored,
                        "INSERT INTO cf_docs (tbl, id, doc) VALUES (%s, %s, %s::jsonb) "
                        "ON CONFLICT (tbl, id) DO UPDATE SET doc = excluded.doc", (table, doc_id, text))

    def replace_many(self, table: str, docs: Any) -> None:
        """Every document under its own ``"id"``, written with ``COPY`` into a scratch table and one upsert,
        when this process keeps no index on ``table`` (``db copy``, a restore: nothing to maintain row by
        row; indexes other processes built are marked stale at commit as for any write); else one by one."""
        if self._store.specs_of(table):
            return super().replace_many(table, docs)
        self._check(table)
        # A savepoint: a document that cannot be stored (TypeError while copying) undoes this call only, as
        # a refused replace would, instead of leaving the whole transaction aborted.
        with database_errors(), self._conn.transaction():
            self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS cf_load (n bigint, id bigint, doc text) ON COMMIT DROP")
            self._conn.execute("TRUNCATE cf_load")
            top = 0
            with self._conn.cursor().copy("COPY cf_load (n, id, doc) FROM STDIN") as copy:
                for n, doc in enumerate(docs):
                    doc_id = check_id(doc["id"])
                    copy.write_row((n, doc_id, encode_text(doc, doc_id)))
                    top = max(top, doc_id)
            if not top:
                return
            before = self._conn.execute(
                "WITH w AS (INSERT INTO cf_docs (tbl, id, doc) SELECT %s, id, doc::jsonb FROM "
                "  (SELECT DISTINCT ON (id) id, doc FROM cf_load ORDER BY id, n DESC) AS l "
                "  ON CONFLICT (tbl, id) DO UPDATE SET doc = excluded.doc), "
                "old AS (SELECT last_id FROM cf_last_ids WHERE tbl = %s) "
                "INSERT INTO cf_last_ids (tbl, last_id) VALUES (%s, %s) ON CONFLICT (tbl) "
                "DO UPDATE SET last_id = greatest(cf_last_ids.last_id, excluded.last_id) "
                "RETURNING (SELECT last_id FROM old)", (table, table, table, top)).fetchone()[0]
            self._first_ids.setdefault(table, before or 0)
            self._written.add(table)

    def delete(self, table: str, doc_id: int) -> None:
        """Remove the document; deleting one that does not exist is a no-op."""
        self._check(table)
        with database_errors():
            self._write(table, check_id(doc_id), None, "DELETE FROM cf_docs WHERE tbl = %s AND id = %s",
                        (table, doc_id))

    def _write(self, table: str, doc_id: int, doc: Doc | None, sql: str, params: tuple[Any, ...],
               fresh: bool = False) -> None:
        self._written.add(table)
        old = self._maintain.remove(self._conn, table, doc_id, sql, params, fresh)
        self._maintain.add(self._conn, table, doc_id, doc, old)

    def _before_commit(self) -> None:
        """Two things in one statement before the commit.

        The highest id of each table becomes the highest id *committed* (or kept from before): ids taken
        by documents inserted and deleted again in this transaction are free again, as in the other stores
        (during the transaction ``cf_last_ids`` counts every id handed out, so a later insert never reuses
        one; any document above the old highest id was written by this transaction, so the highest one
        left, read from the documents themselves, is right even after savepoints rolled back).

        The built indexes on the tables written that this process does not keep are marked stale.
        """
        if not self._written:
            return
        declared = [(s.name, s.version) for s in self._store._specs.values()]
        tables = sorted(self._first_ids)
        self._conn.execute(
            "WITH stale AS (UPDATE cf_indexes SET version = NULL WHERE tbl = ANY(%s) AND version IS NOT NULL "
            "  AND (name, version) NOT IN (SELECT * FROM unnest(%s::text[], %s::text[]))) "
            "UPDATE cf_last_ids l SET last_id = greatest(u.first, (SELECT coalesce(max(d.id), 0) FROM cf_docs d "
            "  WHERE d.tbl = l.tbl AND d.id > u.first)) "
            "FROM unnest(%s::text[], %s::bigint[]) AS u(tbl, first) WHERE l.tbl = u.tbl AND l.last_id > u.first",
            (sorted(self._written), [n for n, _ in declared], [v for _, v in declared],
             tables, [self._first_ids[t] for t in tables]))


# -- queries shared by the store (a pooled connection) and a transaction (its connection) ------------


def _get(conn: psycopg.Connection[Any], table: str, doc_id: int) -> Doc | None:
    row = conn.execute("SELECT doc FROM cf_docs WHERE tbl = %s AND id = %s", (table, doc_id)).fetchone()
    return None if row is None else row[0]


def _stream(conn: psycopg.Connection[Any], sql: str, params: Any) -> Iterator[Doc]:
    """The first column of each row, fetched ``_STREAM_ROWS`` at a time from a server-side cursor (inside
    a transaction), so scanning a big table never holds all of it."""
    _stream.serial += 1  # type: ignore[attr-defined]
    with conn.cursor(name=f"cf_stream_{_stream.serial}") as cur:  # type: ignore[attr-defined]
        cur.itersize = _STREAM_ROWS
        cur.execute(sql, params)
        for row in cur:
            yield row[0]


_stream.serial = 0  # type: ignore[attr-defined]


def _search(conn: psycopg.Connection[Any], table: str, predicate: Predicate | None,
            lower: str | None = pg_conditions.ICU) -> list[Doc]:
    if isinstance(predicate, Condition):  # filtered by the database
        cond, params = pg_conditions.compile_where(predicate, lower)
        return [row[0] for row in conn.execute(
            f"SELECT d.doc FROM cf_docs d WHERE d.tbl = %(tbl)s AND {cond} ORDER BY d.id", {**params, "tbl": table})]
    sql = "SELECT doc FROM cf_docs WHERE tbl = %s ORDER BY id"
    if predicate is None:
        return [row[0] for row in conn.execute(sql, (table,))]
    return [doc for doc in _stream(conn, sql, (table,)) if predicate(doc.copy())]


def _count(conn: psycopg.Connection[Any], table: str, predicate: Condition | None = None,
           lower: str | None = pg_conditions.ICU) -> int:
    if predicate is None:
        return conn.execute("SELECT count(*) FROM cf_docs WHERE tbl = %s", (table,)).fetchone()[0]
    cond, params = pg_conditions.compile_where(predicate, lower)
    return conn.execute(f"SELECT count(*) FROM cf_docs d WHERE d.tbl = %(tbl)s AND {cond}",
                        {**params, "tbl": table}).fetchone()[0]


def _lookup(conn: psycopg.Connection[Any], spec: Index, keys: Any, offset: int, limit: int | None,
            newest: bool, where: Predicate | None, omit: Any = (), lower: str | None = pg_conditions.ICU) -> Page:
    wanted = list(dict.fromkeys(pgi.encode_key(k) for k in keys))
    if not wanted:
        return Page([], 0)
    params = pgi.query_params(spec, wanted)
    skipped = list(omit)
    if isinstance(where, Condition):  # filtered, counted and paged by the database
        cond, cond_params = pg_conditions.compile_where(where, lower)
        params = {**params, **cond_params}
        if limit != 0:
            rows = conn.execute(pgi.filtered_page_sql(wanted, newest, cond),
                                {**params, "offset": offset, "limit": limit, "omit": skipped}).fetchall()
            if rows:
                return Page([doc for doc, _total in rows], rows[0][1])
        return Page([], conn.execute(pgi.filtered_count_sql(wanted, cond), params).fetchone()[0])
    if where is not None:
        docs, total = pgi.window(_stream(conn, pgi.hits_sql(wanted, newest), params), offset, limit, where)
        if skipped:  # ``where`` saw whole documents; the page leaves the keys out
            docs = [{k: v for k, v in d.items() if k not in skipped} for d in docs]
        return Page(docs, total)
    if limit != 0:
        rows = conn.execute(pgi.page_sql(wanted, newest),
                            {**params, "offset": offset, "limit": limit, "omit": skipped}).fetchall()
        if rows:
            return Page([doc for doc, _total in rows], rows[0][1])
    # No row (nothing there, past the end, or limit 0) carries the total: count.
    return Page([], conn.execute(pgi.count_sql(wanted), params).fetchone()[0])


def _count_keys(conn: psycopg.Connection[Any], spec: Index, keys: Any) -> int:
    wanted = list(dict.fromkeys(pgi.encode_key(k) for k in keys))
    if not wanted:
        return 0
    return conn.execute(pgi.count_sql(wanted), pgi.query_params(spec, wanted)).fetchone()[0]


def _totals(conn: psycopg.Connection[Any], tally: str) -> dict[Key, float]:
    rows = conn.execute("SELECT key, total FROM cf_tally_sums WHERE tally = %s AND total <> 0", (tally,))
    return {pgi.decode_key(key): pgi.number(total) for key, total in rows}
