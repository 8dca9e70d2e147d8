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

Every process keeps the full data in memory and, before each read or transaction,
reads only the journal bytes added since it last looked. When the journal outgrows
``max(1 MiB, snapshot size)`` the writer that crossed the line compacts: it writes a
new snapshot, then swaps in an empty journal. Replay skips entries whose sequence
number the snapshot already holds, so a crash anywhere in compaction loses nothing
and applies nothing twice. A torn last line (a crash mid-write: never acknowledged)
is ignored by readers and cut off by the next writer.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import zlib
from typing import Any

from engine.store.base import Doc
from engine.store.memory import META_TABLE, CorruptStoreError, Op, StoreError, TableStore

log = logging.getLogger(__name__)

FORMAT = 1
_CRC_PREFIX = b'{"crc":"'
_BODY_START = len(_CRC_PREFIX) + 8 + 2  # '{"crc":"' + 8 hex digits + '",'


def encode_entry(seq: int, ops: list[Op]) -> bytes:
    """One journal line; the checksum covers every byte after the fixed-width crc field."""
    wire = [[table, int(key), doc] for table, key, doc in ops]
    body = b'"seq":%d,"ops":%s}' % (seq, json.dumps(wire, separators=(",", ":"), allow_nan=False).encode())
    return b'%s%08x",%s\n' % (_CRC_PREFIX, zlib.crc32(body), body)


def decode_entry(line: bytes) -> tuple[int, list[Op]] | None:
    """``(seq, ops)`` for a whole, intact line (without its newline); None if damaged."""
    if len(line) <= _BODY_START or not line.startswith(_CRC_PREFIX) or line[16:18] != b'",':
        return None
    try:
        if int(line[8:16], 16) != zlib.crc32(line[_BODY_START:]):
            return None
        entry = json.loads(line)
        seq, wire = entry["seq"], entry["ops"]
        ops = [(table, str(number), doc) for table, number, doc in wire]
    except (ValueError, KeyError, TypeError):
        return None
    if type(seq) is not int:
        return None
    return seq, ops


def parse_journal(data: bytes) -> tuple[list[tuple[int, list[Op]]], int, int | None]:
    """Split journal bytes into intact entries.

    Returns ``(entries, good_length, damaged_at)``: ``good_length`` is where the intact
    prefix ends; ``damaged_at`` is the offset of a damaged line that is followed by an
    intact one (real corruption, not a torn write), else None.
    """
    entries = []
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            return entries, pos, None  # an unterminated tail is a torn write
        entry = decode_entry(data[pos:end])
        if entry is None:
            rest = data[end + 1:].split(b"\n")[:-1]
            damaged = any(decode_entry(line) is not None for line in rest)
            return entries, pos, pos if damaged else None
        entries.append(entry)
        pos = end + 1


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: str) -> None:
    """``os.makedirs``, then fsync each new directory's parent so the new entries are durable."""
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for new in reversed(missing):
        try:
            os.mkdir(new)
        except FileExistsError:
            pass
        _fsync_dir(os.path.dirname(new))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class TinyDBStore(TableStore):
    """A store in a TinyDB JSON file, safe for many threads and processes, durable on commit.

    ``compact_bytes`` sets the journal size that triggers compaction; by default it is
    ``max(1 MiB, size of the snapshot)``, which keeps compaction amortised O(1) per write.

    Each process holds all the data in memory. Open one store per file per process:
    two store objects on one file lock each other out like two processes would, so a
    transaction on one inside a transaction on the other, on one thread, never ends.
    """

    def __init__(self, path: str | os.PathLike[str], *, compact_bytes: int | None = None) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.journal_path = self.path + ".journal"
        self.lock_path = self.path + ".lock"
        self.compact_bytes = compact_bytes
        self._dir = os.path.dirname(self.path)
        self._journal_fd: int | None = None
        self._journal_id: tuple[int, int] | None = None  # (st_dev, st_ino)
        self._offset = 0  # bytes of the journal applied to memory
        self._seq = 0  # last sequence number applied
        self._snapshot_size = 0
        self._exclusive = False  # this process holds the exclusive flock (a transaction runs)
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
        tables, seq, last_ids, size = self._read_snapshot()
        fd = self._open_journal()
        try:
            st = os.fstat(fd)
            data = os.pread(fd, st.st_size, 0)
        except BaseException:
            os.close(fd)
            raise
        try:
            entries, good, damaged = parse_journal(data)
            if damaged is not None:
                raise CorruptStoreError(
                    f"{self.journal_path}: damaged entry at byte {damaged}, followed by intact ones; "
                    f"the file was not modified. Restore it from a backup or cut it at that byte "
                    f"(losing the transactions after it).")
            entries = [(s, ops) for s, ops in entries if s > seq]
            if entries and entries[0][0] != seq + 1:
                raise CorruptStoreError(
                    f"{self.journal_path}: starts at transaction {entries[0][0]} but the snapshot "
                    f"{self.path} ends at {seq}; the snapshot is missing or older than the journal "
                    f"(was it restored from a backup?). Nothing was modified.")
            self._reset_state(tables, last_ids)
            self._seq = seq
            self._snapshot_size = size
            self._replay(entries)
        except BaseException:
            os.close(fd)
            raise
        self._journal_fd, self._journal_id, self._offset = fd, (st.st_dev, st.st_ino), good
        if writer and good < len(data):
            self._cut_torn_tail(len(data) - good)

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

    def _read_snapshot(self) -> tuple[dict[str, dict[str, Doc]], int, dict[str, int], int]:
        """``(tables, seq, last_ids, size)``; a missing or empty file is an empty store."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}, 0, {}, 0
        if not raw.strip():
            return {}, 0, {}, 0

        def bad(why: str) -> CorruptStoreError:
            return CorruptStoreError(
                f"{self.path}: cannot open the store: {why}. The file was not modified; "
                f"fix it or restore it from a backup (its journal {self.journal_path} "
                f"holds the transactions since it was written).")

        try:
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
        return data, seq, last_ids, len(raw)

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
            limit = max(1 << 20, self._snapshot_size)
        if self._offset > limit:
            try:
                self._compact()
            except OSError:
                # The transaction is already durable in the journal; try again next commit.
                log.exception("%s: compaction failed", self.path)

    def compact(self) -> None:
        """Fold the journal into the snapshot now (it also happens by itself as the journal grows)."""
        with self.transaction():  # exclusive lock, caught up; re-entrant inside a transaction
            with self._state_lock:
                self._compact()

    def _compact(self) -> None:
        """Write a snapshot of everything applied, then an empty journal (exclusive lock held)."""
        data: dict[str, Any] = dict(self._tables)
        data[META_TABLE] = {"1": {"format": FORMAT, "seq": self._seq, "last_ids": self._last_ids}}
        snapshot = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        self._remove_stale_temp_files()
        self._replace_file(self.path, snapshot)
        # A crash here leaves the old journal: replay skips what the snapshot holds.
        self._replace_file(self.journal_path, b"")
        fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        st = os.fstat(fd)
        if self._journal_fd is not None:
            os.close(self._journal_fd)
        self._journal_fd, self._journal_id, self._offset = fd, (st.st_dev, st.st_ino), 0
        self._snapshot_size = len(snapshot)

    def _temp_prefix(self) -> str:
        return f".{os.path.basename(self.path)}.compact-"

    def _replace_file(self, path: str, data: bytes) -> None:
        tmp = os.path.join(self._dir, f"{self._temp_prefix()}{os.getpid()}.tmp")
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(self._dir)

    def _remove_stale_temp_files(self) -> None:
        """Temp files left by a compaction that crashed (only one compacts at a time)."""
        prefix = self._temp_prefix()
        for name in os.listdir(self._dir):
            if name.startswith(prefix) and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self._dir, name))
                except OSError:
                    pass

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

    def close(self) -> None:
        """Release the files and locks; later use raises ``StoreError``."""
        with self._tx_lock, self._state_lock:
            if not self._closed:
                self._closed = True
                self._close_files()
