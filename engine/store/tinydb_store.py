"""A durable, multi-process store: a TinyDB JSON snapshot plus an append-only journal.

Files, for a store at ``path``:

``path``
    The snapshot: a plain TinyDB JSON file (``tinydb.TinyDB(path)`` reads it), with an
    extra ``_meta`` table holding the last journal sequence number it includes. Only
    ever replaced whole (temp file, fsync, ``os.replace``, directory fsync).
``path.journal``
    One line per committed transaction, ``{"crc":"<crc32 of the rest>","seq":N,"ops":[...]}``,
    each op ``[table, id, doc]`` (``doc`` null = delete). Written with one ``os.write``
    and fsynced before ``transaction()`` returns, so acknowledged means durable.
``path.lock``
    ``flock``-ed: shared to catch up before a read, exclusive for a whole transaction.
``path.offsets``
    The sidecar (only an accelerator: deleting it loses nothing): where each document's
    JSON lies inside the snapshot (byte offset and length, per table and id) and the
    entries each declared index and tally had, written with every snapshot (temp file,
    fsync, ``os.replace``). It names the snapshot it belongs to by size, sequence number
    and a random token that the snapshot's ``_meta`` also holds, and carries a crc32 of
    itself, so a missing, stale (a crash between writing the snapshot and the sidecar,
    a snapshot restored from a backup or edited by hand) or damaged sidecar is noticed
    at open and ignored: the store then reads the whole snapshot as before, and its next
    commit compacts, which writes a fresh sidecar.

Every process keeps its tables in memory and, before each read or transaction, reads
only the journal bytes added since it last looked. With a sidecar, opening does not
parse the snapshot: it maps the file (``mmap``), keeps each document as an
``(offset, length)`` handle and parses one on first access (the last
``cache_docs`` parsed are kept; the rest are parsed again when needed, so memory does
not grow to the whole data set), and builds each index from its saved entries when an
index of the same name, table and ``version`` is declared (entries of documents
written since the snapshot are computed again). Documents written since the snapshot
come from the journal, parsed. A full-table ``search`` therefore parses every document
it has not cached: use indexes for anything that runs per request.

When the journal outgrows ``max(1 MiB, snapshot size / 16)`` the writer that crossed the
line compacts: it writes a new snapshot (copying the bytes of documents it never
parsed straight from the old one), the sidecar, then swaps in an empty journal.
Replay skips entries whose sequence number the snapshot already holds, so a crash
anywhere in compaction loses nothing and applies nothing twice. A torn last line (a
crash mid-write: never acknowledged) is ignored by readers and cut off by the next
writer. Never write the snapshot with plain TinyDB (or anything else) while a store has
it open: its mapping would see the bytes change under it.

Why 1/16 (it was ``max(1 MiB, snapshot size)``): opening replays, that is parses, the
whole journal, so the journal must stay small next to the snapshot for opening to stay
fast at 100k cases (there a 1/16 journal is about 15 MB and adds about half a second to
an open); compaction mostly copies bytes (about 1.5 s at 100k cases), so writing the
snapshot once per 1/16 of it in journal costs well under a millisecond per write
(numbers: ``bench/store_open.py``).
"""
from __future__ import annotations

import fcntl
import json
import mmap
import os
from collections import OrderedDict
from typing import Any

from engine.store.base import Doc
from engine.store.fileformat import (  # noqa: F401 - decode_entry, *_sidecar: what tests and benches import from here
    JOURNAL_FRACTION, Snapshot, _fsync_dir, _make_dirs, decode_entry, decode_sidecar, encode_entry,
    encode_sidecar, log, parse_journal,
)
from engine.store.memory import META_TABLE, CorruptStoreError, Op, StoreError, TableStore
from engine.store.snapshot import SnapshotFiles


class TinyDBStore(SnapshotFiles, TableStore):
    """A store in a TinyDB JSON file, safe for many threads and processes, durable on commit.

    ``compact_bytes`` sets the journal size that triggers compaction; by default it is
    ``max(1 MiB, size of the snapshot / 16)``, which keeps compaction amortised O(1) per
    write and the journal replayed at open small. ``cache_docs`` is how many documents
    parsed from the snapshot stay parsed (the least recently used are dropped; None:
    all, so memory grows back to the whole data set as documents are read).

    Each process holds the tables in memory (unparsed documents as handles into the
    mapped snapshot). Open one store per file per process: two store objects on one
    file lock each other out like two processes would, so a transaction on one inside
    a transaction on the other, on one thread, never ends.
    """

    def __init__(self, path: str | os.PathLike[str], *, compact_bytes: int | None = None,
                 cache_docs: int | None = 4096) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.journal_path = self.path + ".journal"
        self.lock_path = self.path + ".lock"
        self.offsets_path = self.path + ".offsets"
        self.compact_bytes = compact_bytes
        self.cache_docs = cache_docs
        self._dir = os.path.dirname(self.path)
        self._journal_fd: int | None = None
        self._journal_id: tuple[int, int] | None = None  # (st_dev, st_ino)
        self._offset = 0  # bytes of the journal applied to memory
        self._seq = 0  # last sequence number applied
        self._snapshot_size = 0
        self._exclusive = False  # this process holds the exclusive flock (a transaction runs)
        self._mapped: mmap.mmap | None = None  # the snapshot the handles in the tables point into
        self._cache: OrderedDict[tuple[str, str], Doc] = OrderedDict()  # parsed from the snapshot
        #: Sidecar sections of indexes not declared yet (add_index claims them).
        self._sections: dict[str, Any] = {}
        #: (table, str(id)) written since the snapshot: their saved index entries are out of date.
        self._dirty: set[tuple[str, str]] = set()
        self._sidecar_wanted = False  # the snapshot has no usable sidecar: the next commit compacts
        super().__init__()
        _make_dirs(self._dir)
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            with self._state_lock:
                self._refresh()
        except BaseException:
            self._close_files()
            raise

    def __repr__(self) -> str:
        return f"TinyDBStore({self.path!r})"

    # -- locking and catching up ---------------------------------------------------

    def _refresh(self) -> None:
        if self._exclusive:
            return  # a transaction of ours holds the lock: nobody else can have written
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        try:
            self._catch_up(writer=False)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _begin_write(self) -> None:
        with self._state_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._exclusive = True
            try:
                self._catch_up(writer=True)
            except BaseException:
                self._end_write()
                raise

    def _end_write(self) -> None:
        with self._state_lock:
            if self._exclusive:
                self._exclusive = False
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _catch_up(self, writer: bool) -> None:
        """Apply journal entries other processes appended since we last looked."""
        try:
            st = os.stat(self.journal_path)
        except FileNotFoundError:
            st = None
        if (self._journal_fd is None or st is None
                or (st.st_dev, st.st_ino) != self._journal_id or st.st_size < self._offset):
            self._reload(writer)  # first open, or the journal was replaced by a compaction
            return
        if st.st_size == self._offset:
            return
        data = os.pread(self._journal_fd, st.st_size - self._offset, self._offset)
        entries, good, damaged = parse_journal(data)
        expected = list(range(self._seq + 1, self._seq + 1 + len(entries)))
        if damaged is not None or [seq for seq, _ in entries] != expected:
            self._reload(writer)  # unexpected: start over from the files, which will explain
            return
        self._replay(entries)
        self._offset += good
        if writer and good < len(data):
            self._cut_torn_tail(len(data) - good)

    def _reload(self, writer: bool) -> None:
        """Load the snapshot and the whole journal from scratch."""
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None  # if anything below fails, the next access starts over
        snapshot = self._read_snapshot()
        try:
            fd = self._open_journal()
        except BaseException:
            snapshot.close()
            raise
        try:
            st = os.fstat(fd)
            data = os.pread(fd, st.st_size, 0)
            entries, good, damaged = parse_journal(data)
            if damaged is not None:
                raise CorruptStoreError(
                    f"{self.journal_path}: damaged entry at byte {damaged}, followed by intact ones; "
                    f"the file was not modified. Restore it from a backup or cut it at that byte "
                    f"(losing the transactions after it).")
            seq = snapshot.seq
            entries = [(s, ops) for s, ops in entries if s > seq]
            if entries and entries[0][0] != seq + 1:
                raise CorruptStoreError(
                    f"{self.journal_path}: starts at transaction {entries[0][0]} but the snapshot "
                    f"{self.path} ends at {seq}; the snapshot is missing or older than the journal "
                    f"(was it restored from a backup?). Nothing was modified.")
        except BaseException:
            os.close(fd)
            snapshot.close()
            raise
        try:
            self._use_snapshot(snapshot)
            self._reset_state(snapshot.tables, snapshot.last_ids)
            self._seq = seq
            self._snapshot_size = snapshot.size
            self._replay(entries)
        except BaseException:
            os.close(fd)
            raise
        self._journal_fd, self._journal_id, self._offset = fd, (st.st_dev, st.st_ino), good
        if writer and good < len(data):
            self._cut_torn_tail(len(data) - good)

    def _use_snapshot(self, snapshot: Snapshot) -> None:
        """Point the store at a freshly read snapshot (its handles, its mapping, its sidecar sections)."""
        if self._mapped is not None:
            self._mapped.close()
        self._mapped, snapshot.mapped = snapshot.mapped, None
        self._cache.clear()
        self._dirty.clear()
        self._sections = snapshot.sections
        self._sidecar_wanted = self._mapped is None and snapshot.size > 0

    def _open_journal(self) -> int:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        try:
            return os.open(self.journal_path, flags)
        except FileNotFoundError:
            fd = os.open(self.journal_path, flags | os.O_CREAT, 0o644)
            _fsync_dir(self._dir)  # so the first acknowledged write cannot lose its file
            return fd

    def _replay(self, entries: list[tuple[int, list[Op]]]) -> None:
        for seq, ops in entries:
            if seq != self._seq + 1:
                raise CorruptStoreError(
                    f"{self.journal_path}: transaction {seq} follows {self._seq}; entries are "
                    f"missing or out of order. Nothing was modified.")
            self._apply(ops)
            self._seq = seq

    def _cut_torn_tail(self, size: int) -> None:
        """Drop the bytes a writer left when it died mid-write (never acknowledged)."""
        log.warning("%s: dropping %d bytes of an unfinished transaction", self.journal_path, size)
        assert self._journal_fd is not None
        os.ftruncate(self._journal_fd, self._offset)
        os.fsync(self._journal_fd)

    def _read_snapshot(self) -> Snapshot:
        """The snapshot, through its sidecar when that matches, else parsed whole; missing or empty: empty."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return Snapshot({})
        with f:
            size = os.fstat(f.fileno()).st_size
            if size:
                lazy = self._read_through_sidecar(f.fileno(), size)
                if lazy is not None:
                    return lazy
            raw = f.read()
        if not raw.strip():
            return Snapshot({})

        def bad(why: str) -> CorruptStoreError:
            return CorruptStoreError(
                f"{self.path}: cannot open the store: {why}. The file was not modified; "
                f"fix it or restore it from a backup (its journal {self.journal_path} "
                f"holds the transactions since it was written).")

        try:
            # json, not orjson: for a whole file orjson is no faster here, and json keeps big integers
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad(f"it is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise bad("it is not a TinyDB file (the top level is not an object)")
        meta: Any = data.pop(META_TABLE, None) or {}
        try:
            info = meta["1"] if meta else {}
            seq = int(info.get("seq", 0))
            last_ids = {str(k): int(v) for k, v in info.get("last_ids", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise bad(f"its {META_TABLE!r} table is malformed ({exc!r})") from exc
        for name, table in data.items():
            if not isinstance(table, dict):
                raise bad(f"table {name!r} is not an object")
            for key, doc in table.items():
                if not (key.isascii() and key.isdigit() and int(key) >= 1) or not isinstance(doc, dict):
                    raise bad(f"table {name!r}, document {key!r} is not an object with a numeric id")
                doc["id"] = int(key)
        return Snapshot(data, seq, last_ids, len(raw))

    def _apply(self, ops: list[Op]) -> None:
        for name, key, _doc in ops:
            self._dirty.add((name, key))
            self._cache.pop((name, key), None)
        super()._apply(ops)


    # -- committing and compacting ---------------------------------------------------

    def _persist(self, ops: list[Op]) -> None:
        assert self._exclusive and self._journal_fd is not None
        line = encode_entry(self._seq + 1, ops)
        try:
            written = os.write(self._journal_fd, line)  # one write: the line lands whole or torn
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
            os.fsync(self._journal_fd)
        except OSError as exc:
            fd, self._journal_fd = self._journal_fd, None  # the next access reloads from disk
            try:
                os.ftruncate(fd, self._offset)
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)
            raise StoreError(f"{self.journal_path}: could not save the transaction ({exc}); "
                             f"it was not committed") from exc
        self._seq += 1
        self._offset += len(line)

    def _after_commit(self) -> None:
        limit = self.compact_bytes
        if limit is None:
            limit = max(1 << 20, self._snapshot_size // JOURNAL_FRACTION)
        if self._offset > limit or self._sidecar_wanted:
            try:
                self._compact()
            except OSError:
                # The transaction is already durable in the journal; try again next commit.
                log.exception("%s: compaction failed", self.path)

    def save_indexes(self) -> None:
        """Compact now if an index had to be computed from the documents (no saved entries for its version),
        so that cost is paid once, at the start after the definitions changed, not at every start."""
        if self._sidecar_wanted:
            self.compact()

    def compact(self) -> None:
        """Fold the journal into the snapshot now (it also happens by itself as the journal grows)."""
        with self.transaction():  # exclusive lock, caught up; re-entrant inside a transaction
            with self._state_lock:
                self._compact()

    # -- closing -----------------------------------------------------------------------

    def _close_files(self) -> None:
        for fd in (self._journal_fd, getattr(self, "_lock_fd", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._journal_fd = None
        self._lock_fd = None  # type: ignore[assignment]
        if self._mapped is not None:
            self._mapped.close()
            self._mapped = None
        self._cache.clear()

    def close(self) -> None:
        """Release the files and locks; later use raises ``StoreError``."""
        with self._tx_lock, self._state_lock:
            if not self._closed:
                self._closed = True
                self._close_files()
