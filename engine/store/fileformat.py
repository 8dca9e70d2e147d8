"""The file store's formats: journal lines, the snapshot's sidecar of byte ranges and index entries, and
the small file helpers (durable writes, directory fsync). Used by ``engine.store.tinydb_store``."""
from __future__ import annotations

import json
import logging
import mmap
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Any
import orjson
from engine.store.base import Index, Key, Tally
from engine.store.memory import Op

log = logging.getLogger("engine.store.tinydb_store")  # one logger for the file store

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


#: The sidecar of a store file: beside it, under its name plus this.
SIDECAR_SUFFIX = ".offsets"


def write_store_file(path: str, tables: Any, keep: Any = ()) -> tuple[dict[str, int], dict[str, list[Any]]]:
    """Write a compacted file store (snapshot and sidecar, no journal) at ``path`` from ``tables``, an iterable
    of ``(name, documents)`` whose documents may be a stream: each is written as it comes, so writing a whole
    database holds one document at a time (a backup of PostgreSQL). Opening it reads through the sidecar,
    parsing a document only when it is used. Returns the count per table and the documents of the tables
    named in ``keep`` (small ones the caller needs, e.g. the ledgers' chain heads)."""
    import uuid

    from engine.store.memory import META_TABLE

    token = uuid.uuid4().hex
    layout: dict[str, list[list[Any]]] = {}
    last_ids: dict[str, int] = {}
    counts: dict[str, int] = {}
    kept: dict[str, list[Any]] = {name: [] for name in keep}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        out = _Output(fd)
        out.write(b"{")
        for name, docs in tables:
            if name == META_TABLE:
                continue
            out.write(b'%s%s:{' % (b"," if layout else b"", json.dumps(name).encode()))
            keys: list[str] = []
            offsets: list[int] = []
            lengths: list[int] = []
            for doc in docs:
                data = dumps_doc(doc)
                key = str(int(doc["id"]))
                out.write(b'%s"%s":' % (b"," if keys else b"", key.encode()))
                keys.append(key)
                offsets.append(out.pos)
                lengths.append(len(data))
                out.write(data)
                last_ids[name] = max(last_ids.get(name, 0), int(doc["id"]))
                if name in kept:
                    kept[name].append(doc)
            out.write(b"}")
            layout[name] = [keys, offsets, lengths]
            counts[name] = len(keys)
        meta = dumps_doc({"format": FORMAT, "seq": 0, "last_ids": last_ids, "token": token})
        out.write(b'%s"%s":{"1":' % (b"," if layout else b"", META_TABLE.encode()))
        meta_at = out.pos
        out.write(meta)
        out.write(b"}}")
        size = out.pos
        out.flush()
        os.fsync(fd)
    finally:
        os.close(fd)
    body = {"snapshot": {"size": size, "seq": 0, "token": token, "meta": [meta_at, len(meta)]},
            "tables": layout, "indexes": {}}
    fd = os.open(path + SIDECAR_SUFFIX, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, encode_sidecar(body))
        os.fsync(fd)
    finally:
        os.close(fd)
    return {k: v for k, v in sorted(counts.items()) if v}, kept
