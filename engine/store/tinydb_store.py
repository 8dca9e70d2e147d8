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
import logging
import mmap
import os
import re
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.store.base import Doc, Index, Key, Tally
from engine.store.memory import META_TABLE, CorruptStoreError, Op, StoreError, TableStore

log = logging.getLogger(__name__)

FORMAT = 1
#: The journal may grow to this fraction of the snapshot before compaction (see the module docstring).
JOURNAL_FRACTION = 16
SIDECAR_MAGIC = b"civicflow-offsets"
SIDECAR_FORMAT = 1
_CRC_PREFIX = b'{"crc":"'
_BODY_START = len(_CRC_PREFIX) + 8 + 2  # '{"crc":"' + 8 hex digits + '",'


# orjson parses a case about 1.5x faster than json, but reads integers beyond 64 bits as floats:
# a run of 19+ digits anywhere (a long number, or digits inside a string) sends the document to json.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def loads_doc(data: bytes) -> Any:
    """Parse one document's JSON exactly as ``json.loads`` would, faster when it can."""
    if _LONG_DIGITS.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # e.g. a lone surrogate, which json accepts
    return json.loads(data)


def dumps_doc(doc: Any) -> bytes:
    """A document as the snapshot and the journal hold it (ASCII JSON, no NaN)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


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
        entry = loads_doc(line)
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


_INT64 = 1 << 63


def _plain(value: Any) -> bool:
    """Does ``value`` (an index key, order or tally number) come back from the sidecar's JSON unchanged?

    Tuples come back as tuples (the sidecar writes lists only for them); lists, big integers, NaN and
    anything else make that index be computed again at open instead.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_INT64 <= value < _INT64
    if kind is float:
        return value == value and value not in (float("inf"), float("-inf"))
    if kind is tuple:
        return all(_plain(v) for v in value)
    return False


def _to_json(value: Any) -> Any:
    return [_to_json(v) for v in value] if type(value) is tuple else value


def _from_json(value: Any) -> Any:
    return tuple(_from_json(v) for v in value) if type(value) is list else value


def encode_sidecar(body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return b"%s %d %08x\n%s" % (SIDECAR_MAGIC, SIDECAR_FORMAT, zlib.crc32(payload), payload)


def decode_sidecar(raw: bytes) -> dict[str, Any] | None:
    """The sidecar's body, or None if it is not an intact sidecar of this format."""
    header, newline, payload = raw.partition(b"\n")
    parts = header.split(b" ")
    if not newline or len(parts) != 3 or parts[0] != SIDECAR_MAGIC or parts[1] != b"%d" % SIDECAR_FORMAT:
        return None
    try:
        if int(parts[2], 16) != zlib.crc32(payload):
            return None
        body = orjson.loads(payload)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _section_of(spec: Index | Tally) -> dict[str, Any]:
    return {"kind": "tally" if isinstance(spec, Tally) else "index", "table": spec.table, "version": spec.version}


def export_index(spec: Index | Tally, indexes: Any) -> dict[str, Any] | None:
    """The sidecar section of one live index or tally, or None if its keys or orders are not plain JSON.

    Index: the distinct ``keys``, per key its posting list (``orders``, ``ids``), and per document
    (``ids``) its order and the positions of its keys. Tally: the distinct ``keys`` with their ``sums``
    (added up in id order, as a rebuild would) and per document its ``[key position, number, ...]``.
    """
    section = _section_of(spec)
    key_table: list[Key]
    if isinstance(spec, Tally):
        pairs = indexes.all_pairs(spec.name)
        positions: dict[Key, int] = {}
        key_table, sums, doc_ids, flats = [], [], [], []
        for doc_id in sorted(pairs):
            flat: list[Any] = []
            for key, value in pairs[doc_id]:
                at = positions.get(key)
                if at is None:
                    if not _plain(key):
                        return None
                    at = positions[key] = len(key_table)
                    key_table.append(key)
                    sums.append(0)
                if type(value) not in (int, float) or not _plain(value):
                    return None
                sums[at] += value
                flat += (at, value)
            doc_ids.append(doc_id)
            flats.append(flat)
        section.update(keys=[_to_json(k) for k in key_table], sums=sums, ids=doc_ids, pairs=flats, stale=[])
        return section
    postings = indexes.postings[spec.name]
    key_table = list(postings)
    if not all(_plain(k) for k in key_table):
        return None
    tuples = False
    rows = []
    doc_keys: dict[int, list[int]] = {}
    doc_orders: dict[int, Any] = {}
    for at, key in enumerate(key_table):
        entry_list = postings[key]
        orders = [order for order, _id in entry_list]
        if not all(type(order) is str for order in orders):
            if not all(_plain(order) for order in orders):
                return None
            if any(type(order) is tuple for order in orders):
                tuples = True
                orders = [_to_json(order) for order in orders]
        ids = [doc_id for _order, doc_id in entry_list]
        rows.append([orders, ids])
        for order, doc_id in zip(orders, ids):
            found = doc_keys.get(doc_id)
            if found is None:
                doc_keys[doc_id] = [at]
                doc_orders[doc_id] = order
            else:
                found.append(at)
    section.update(tuples=tuples, keys=[_to_json(k) for k in key_table], postings=rows, ids=list(doc_keys),
                   orders=list(doc_orders.values()), doc_keys=list(doc_keys.values()), stale=[])
    return section


def restore_index(spec: Index | Tally, section: dict[str, Any], indexes: Any) -> None:
    """Install ``spec`` from its sidecar section (raises ValueError, TypeError... if it is malformed)."""
    key_table = [_from_json(k) for k in section["keys"]]
    if isinstance(spec, Tally):
        if len(section["sums"]) != len(key_table) or len(section["ids"]) != len(section["pairs"]):
            raise ValueError("keys and sums, or ids and pairs, differ in length")
        sums = dict(zip(key_table, section["sums"]))
        indexes.restore_tally(spec, sums, dict(zip(section["ids"], section["pairs"])), key_table)
        return
    rows, ids, orders = section["postings"], section["ids"], section["orders"]
    if len(rows) != len(key_table) or not len(ids) == len(orders) == len(section["doc_keys"]):
        raise ValueError("keys and postings, or ids, orders and keys per document, differ in length")
    if section["tuples"]:
        orders = [_from_json(order) for order in orders]
    postings = {}
    for key, (key_orders, key_ids) in zip(key_table, rows):
        if len(key_orders) != len(key_ids):
            raise ValueError("orders and ids differ in length")
        if section["tuples"]:
            key_orders = [_from_json(order) for order in key_orders]
        postings[key] = list(zip(key_orders, key_ids))
    indexes.restore(spec, postings, dict(zip(ids, zip(orders, section["doc_keys"]))), key_table)


@dataclass
class Snapshot:
    """What opening the snapshot gave: tables (documents or, when lazy, ``(offset, length)`` handles into
    ``mapped``), the last sequence number and ids it holds, its size and the sidecar's index sections."""

    tables: dict[str, dict[str, Any]]
    seq: int = 0
    last_ids: dict[str, int] = field(default_factory=dict)
    size: int = 0
    mapped: mmap.mmap | None = None
    sections: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        if self.mapped is not None:
            self.mapped.close()
            self.mapped = None


class _Output:
    """Buffered writes to a file descriptor that know how many bytes came before."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pos, self._parts, self._buffered = fd, 0, [], 0

    def write(self, data: bytes) -> None:
        self._parts.append(data)
        self.pos += len(data)
        self._buffered += len(data)
        if self._buffered >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            _write_all(self.fd, b"".join(self._parts))
            self._parts, self._buffered = [], 0


class TinyDBStore(TableStore):
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

    def _read_through_sidecar(self, fd: int, size: int) -> Snapshot | None:
        """The snapshot as handles, if the sidecar belongs to it; None (after saying why) if not."""
        try:
            with open(self.offsets_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            log.info("%s: no sidecar %s: reading the whole snapshot", self.path, self.offsets_path)
            return None
        except OSError as exc:
            log.warning("%s: cannot read %s (%s): reading the whole snapshot", self.path, self.offsets_path, exc)
            return None
        body = decode_sidecar(raw)
        if body is None:
            log.warning("%s: %s is damaged or of another format: ignored, reading the whole snapshot",
                        self.path, self.offsets_path)
            return None
        mapped = None
        try:
            about = body["snapshot"]
            if about["size"] != size:
                raise ValueError(f"it describes a snapshot of {about['size']} bytes, not {size}")
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            start, length = about["meta"]
            meta = json.loads(mapped[start:start + length])
            if not isinstance(meta, dict) or meta.get("token") != about["token"] or meta.get("seq") != about["seq"]:
                raise ValueError("it belongs to another snapshot")
            seq = int(meta["seq"])
            last_ids = {str(k): int(v) for k, v in meta.get("last_ids", {}).items()}
            tables = {str(name): dict(zip(keys, zip(offsets, lengths)))
                      for name, (keys, offsets, lengths) in body["tables"].items()}
            sections = body.get("indexes", {})
            if not isinstance(sections, dict):
                raise ValueError("its index sections are not an object")
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            if mapped is not None:
                mapped.close()
            log.warning("%s: %s does not match the snapshot (%s): ignored, reading the whole snapshot",
                        self.path, self.offsets_path, exc)
            return None
        return Snapshot(tables, seq, last_ids, size, mapped, sections)

    # -- documents and indexes from the snapshot ----------------------------------------

    def _resolve(self, table: str, key: str, handle: Any) -> Doc:
        cached = self._cache.get((table, key))
        if cached is not None:
            self._cache.move_to_end((table, key))
            return cached
        if self._mapped is None:
            raise StoreError(f"{self.path}: {table}/{key} is not loaded (the store is closed or failed to reload)")
        start, length = handle
        try:
            doc = loads_doc(self._mapped[start:start + length])
        except ValueError:
            doc = None
        if type(doc) is not dict or doc.get("id") != int(key):
            raise CorruptStoreError(
                f"{self.path}: document {table}/{key} is not at byte {start} where {self.offsets_path} "
                f"says it is; that sidecar does not belong to this snapshot. Delete {self.offsets_path} "
                f"(the next compaction writes it again) and reopen; nothing was modified.")
        self._remember(table, key, doc)
        return doc

    def _remember(self, table: str, key: str, doc: Doc) -> None:
        if self.cache_docs is None or self.cache_docs > 0:
            self._cache[(table, key)] = doc
            if self.cache_docs is not None and len(self._cache) > self.cache_docs:
                self._cache.popitem(last=False)

    def _apply(self, ops: list[Op]) -> None:
        for name, key, _doc in ops:
            self._dirty.add((name, key))
            self._cache.pop((name, key), None)
        super()._apply(ops)

    def _build_index(self, spec: Index | Tally) -> None:
        section = self._sections.pop(spec.name, None)
        if section is not None:
            if section.get("kind") != _section_of(spec)["kind"] or section.get("table") != spec.table \
                    or section.get("version") != spec.version:
                log.info("%s: index %r changed (version %r, saved %r): computing it from the documents",
                         self.path, spec.name, spec.version, section.get("version"))
            else:
                try:
                    redo = {int(doc_id) for doc_id in section["stale"]}
                    restore_index(spec, section, self._indexes)
                except (ValueError, TypeError, KeyError, IndexError) as exc:
                    log.warning("%s: saved entries of index %r in %s are malformed (%r): computing it",
                                self.path, spec.name, self.offsets_path, exc)
                else:
                    redo.update(int(key) for table, key in self._dirty if table == spec.table)
                    for doc_id in sorted(redo):
                        self._indexes.update_one(spec, doc_id, self._doc(spec.table, str(doc_id)))
                    return
        table = self._tables.get(spec.table, {})
        if self._mapped is not None and len(table) >= 1000:
            start = time.perf_counter()
            super()._build_index(spec)
            log.warning("%s: index %r computed from %d documents in %.1f s (no saved entries for version %r; "
                        "the next commit compacts, which saves them)", self.path, spec.name, len(table),
                        time.perf_counter() - start, spec.version)
            self._sidecar_wanted = True  # so the next open does not pay this again
            return
        super()._build_index(spec)

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

    def compact(self) -> None:
        """Fold the journal into the snapshot now (it also happens by itself as the journal grows)."""
        with self.transaction():  # exclusive lock, caught up; re-entrant inside a transaction
            with self._state_lock:
                self._compact()

    def _compact(self) -> None:
        """Write a snapshot of everything applied, its sidecar, then an empty journal (exclusive lock held).

        Documents still unparsed are copied as bytes from the old snapshot; only those written since
        (parsed dicts) are serialised. Afterwards every document is a handle into the new snapshot.
        """
        token = uuid.uuid4().hex
        meta = dumps_doc({"format": FORMAT, "seq": self._seq, "last_ids": self._last_ids, "token": token})
        layout: dict[str, list[list[Any]]] = {}
        where: dict[str, int] = {}
        old = self._mapped

        def write_snapshot(out: _Output) -> None:
            out.write(b"{")
            for n, name in enumerate(list(self._tables)):
                out.write(b'%s%s:{' % (b"," if n else b"", json.dumps(name).encode()))
                keys: list[str] = []
                offsets: list[int] = []
                lengths: list[int] = []
                for i, (key, value) in enumerate(self._committed(name).items()):
                    if type(value) is dict:
                        data = dumps_doc(value)
                    else:
                        assert old is not None
                        start, length = value
                        data = old[start:start + length]
                    out.write(b'%s"%s":' % (b"," if i else b"", key.encode()))
                    keys.append(key)
                    offsets.append(out.pos)
                    lengths.append(len(data))
                    out.write(data)
                out.write(b"}")
                layout[name] = [keys, offsets, lengths]
            out.write(b'%s"%s":{"1":' % (b"," if layout else b"", META_TABLE.encode()))
            where["meta"] = out.pos
            out.write(meta)
            out.write(b"}}")
            where["size"] = out.pos

        sections: dict[str, Any] = {}
        for name, spec in self._indexes.specs.items():
            section = export_index(spec, self._indexes)
            if section is None:
                log.info("%s: index %r has keys or orders that are not plain JSON: not saved", self.path, name)
            else:
                sections[name] = section
        carried = {}
        for name, section in self._sections.items():  # saved by another process, not declared here
            if name not in sections:
                stale = set(section.get("stale", ()))
                stale.update(int(key) for table, key in self._dirty if table == section.get("table"))
                carried[name] = sections[name] = {**section, "stale": sorted(stale)}

        self._remove_stale_temp_files()
        self._replace_file(self.path, write_snapshot)
        # A crash from here until the sidecar is replaced leaves a sidecar naming the old snapshot's
        # token: the next open notices and reads the whole snapshot.
        body = {"snapshot": {"size": where["size"], "seq": self._seq, "token": token,
                             "meta": [where["meta"], len(meta)]},
                "tables": layout, "indexes": sections}
        self._replace_file(self.offsets_path, encode_sidecar(body))
        # A crash here leaves the old journal: replay skips what the snapshot holds.
        self._replace_file(self.journal_path, b"")
        fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        st = os.fstat(fd)
        if self._journal_fd is not None:
            os.close(self._journal_fd)
        self._journal_fd, self._journal_id, self._offset = fd, (st.st_dev, st.st_ino), 0
        self._snapshot_size = where["size"]
        self._sidecar_wanted = False
        self._sections = carried
        self._dirty.clear()
        self._point_into_new_snapshot(layout)

    def _point_into_new_snapshot(self, layout: dict[str, list[list[Any]]]) -> None:
        """Swap every document for a handle into the snapshot just written, so parsed ones can be freed."""
        try:
            with open(self.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            # The old handles and documents are still right, only not freed.
            log.warning("%s: cannot map the new snapshot; keeping the old one", self.path, exc_info=True)
            return
        tables = self._tables
        for name, (keys, offsets, lengths) in layout.items():
            for key, value in tables[name].items():
                if type(value) is dict:  # written lately: likely read again soon
                    self._remember(name, key, value)
            tables[name] = dict(zip(keys, zip(offsets, lengths)))
        if self._mapped is not None:
            self._mapped.close()
        self._mapped = mapped

    def _temp_prefix(self) -> str:
        return f".{os.path.basename(self.path)}.compact-"

    def _replace_file(self, path: str, data: bytes | Callable[[_Output], None]) -> None:
        """Write ``data`` (bytes, or a function writing to an ``_Output``) to a temp file, fsync, rename."""
        tmp = os.path.join(self._dir, f"{self._temp_prefix()}{os.getpid()}.tmp")
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            try:
                if isinstance(data, bytes):
                    _write_all(fd, data)
                else:
                    out = _Output(fd)
                    data(out)
                    out.flush()
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
