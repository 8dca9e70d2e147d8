"""The SQL side of indexes and tallies for ``PostgresStore``: encoding keys and order values, keeping the
entry and tally tables in step with every write, building an index, and the lookup queries.

An :class:`~engine.store.base.Index` is Python (``keys(doc)``, ``order(doc)``), but its entries are rows of
``cf_entries`` (index, key, order, document id) under a B-tree primary key, written in the same database
transaction as the document, so a lookup is one SQL query walking that B-tree: ``WHERE idx = … AND key =
ANY(…) ORDER BY ord DESC, doc_id DESC OFFSET … LIMIT …``, joined to the documents; ``count_keys`` is a
``COUNT(DISTINCT doc_id)``; a tally's sums are rows of ``cf_tally_sums``, read without adding anything up.

Two encodings make SQL agree with the other stores:

- a key is compact JSON text (tuples become arrays), compared for equality only. Integral floats and
  booleans become integers first, because Python finds ``("n", 1)``, ``("n", 1.0)`` and ``("n", True)``
  equal and the memory store files them under one key;
- an order value becomes bytes whose byte order (what PostgreSQL uses for ``bytea``) is Python's order of
  the values: numbers (ints and floats together, exactly), strings (by code point, as Python compares
  them, via UTF-8), and tuples or lists of those (element by element, a prefix first), with None lowest.
  Values Python cannot compare with each other (a string and a number) get a fixed order here where
  the memory store would raise.
"""
from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Callable

from engine.store.base import Doc, Index, Key, Tally

_NONE, _NUMBER, _STRING, _SEQUENCE, _END = 0x05, 0x10, 0x20, 0x30, 0x00


# -- encodings ------------------------------------------------------------------------------


def _plain(key: Any) -> Any:
    if type(key) is str or key is None:
        return key
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key
    if isinstance(key, float):
        return int(key) if key.is_integer() else key
    if isinstance(key, (tuple, list)):
        return [_plain(k) for k in key]
    raise TypeError(f"an index key must be made of strings, numbers, None and tuples, not {type(key).__name__}: {key!r}")


def encode_key(key: Key) -> str:
    """A key as the text ``cf_entries.key`` and ``cf_tally_sums.key`` hold.

    Remembered for the most recent keys: building an index encodes hundreds of thousands, most of them the same
    few (``("wf", workflow, state, unit)``). Keys Python finds equal share a cache slot, which is right, since
    they are one key here too; a key that cannot be hashed (holding a list) is encoded every time."""
    try:
        return _encode_key_cached(key)
    except TypeError:
        return _encode_key(key)


@functools.lru_cache(maxsize=1 << 16)
def _encode_key_cached(key: Key) -> str:
    return _encode_key(key)


def _encode_key(key: Key) -> str:
    try:
        return json.dumps(_plain(key), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise TypeError(f"an index key cannot hold NaN or infinity: {key!r}") from exc


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if type(value) is list else value


def decode_key(text: str) -> Key:
    """The Python key back from its text (arrays become tuples again, as they were declared)."""
    return _tuples(json.loads(text))


def _encode_int(n: int, out: bytearray) -> None:
    """Arbitrary-size integers in byte order: a two-byte length (above 0x8000 for >= 0, below for < 0), then
    the magnitude big-endian (one's complement when negative, so a bigger magnitude sorts lower)."""
    size = (abs(n).bit_length() + 7) // 8
    if size >= 0x7FFF:
        raise ValueError(f"an order value is too large an integer ({size} bytes)")
    if n >= 0:
        out += (0x8000 + size).to_bytes(2, "big")
        out += n.to_bytes(size, "big")
    else:
        out += (0x8000 - size).to_bytes(2, "big")
        out += ((1 << (8 * size)) - 1 + n).to_bytes(size, "big")


def _escaped(data: bytes, out: bytearray) -> None:
    """Bytes then a terminator, 0x00 inside escaped as 0x00 0xFF: a prefix sorts first, whatever follows."""
    out += data.replace(b"\x00", b"\x00\xff")
    out.append(_END)


def _encode_number(value: int | float, out: bytearray) -> None:
    """Exactly: the integer part (floor), then the binary digits of the fraction, trailing zeros cut (so
    1 and 1.0 give the same bytes, as 1 == 1.0). Floats are exact binary fractions (``as_integer_ratio``)."""
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("an order value cannot be NaN (it is unordered)")
        if math.isinf(value):
            out += b"\xff\xff" if value > 0 else b"\x00\x00"
            out.append(_END)
            return
        p, q = value.as_integer_ratio()  # q is a power of two
        whole = p // q
        rest, bits = p - whole * q, q.bit_length() - 1
        _encode_int(whole, out)
        size = (bits + 7) // 8
        _escaped((rest << (8 * size - bits)).to_bytes(size, "big").rstrip(b"\x00") if rest else b"", out)
    else:
        _encode_int(int(value), out)
        out.append(_END)


def _encode(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(_NONE)
    elif isinstance(value, (int, float)):
        out.append(_NUMBER)
        _encode_number(value, out)
    elif isinstance(value, str):
        out.append(_STRING)
        _escaped(value.encode("utf-8", "surrogatepass"), out)
    elif isinstance(value, (tuple, list)):
        out.append(_SEQUENCE)
        for item in value:
            _encode(item, out)
        out.append(_END)
    else:
        raise TypeError(f"an order value must be None, a number, a string or a tuple of those, "
                        f"not {type(value).__name__}: {value!r}")


def encode_order(value: Any) -> bytes:
    """An order value as bytes that sort as Python sorts the values (see the module docstring)."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def number(value: Decimal) -> int | float:
    """A sum back from ``numeric``: an int when whole (as Python's sum of ints is), else a float."""
    return int(value) if value == value.to_integral_value() else float(value)


# -- what one document contributes ------------------------------------------------------------


def entries_of(spec: Index, doc: Doc) -> list[tuple[str, bytes]]:
    """``(key text, order bytes)`` for each distinct key ``doc`` is found under."""
    keys = dict.fromkeys(encode_key(k) for k in spec.keys(doc))
    if not keys:
        return []
    order = encode_order(spec.order(doc))
    return [(k, order) for k in keys]


def pairs_of(spec: Tally, doc: Doc) -> list[list[Any]]:
    """``[key text, number]`` for each non-zero value ``doc`` adds to the tally."""
    return [[encode_key(key), value] for key, value in spec.values(doc) if value]


class Maintenance:
    """The rows one transaction's writes add and remove, batched into two statements per write.

    ``before(conn, table, doc_id)`` takes a document's old entries and tally pairs out (returning the pairs
    so their values can be subtracted); ``after(...)`` adds the new document's entries, pairs and the net
    change of each sum. One write costs the same two round trips however many indexes its table has.
    """

    def __init__(self, specs: Callable[[str], list[Index | Tally]]) -> None:
        self._specs = specs

    def remove(self, conn: Any, table: str, doc_id: int, doc_sql: str, doc_params: tuple[Any, ...],
               fresh: bool) -> dict[str, list[list[Any]]]:
        """Run ``doc_sql`` (the document's own write) with the removal of its old entries and pairs in one
        statement; the old pairs per tally. ``fresh``: a new id, which cannot have entries yet."""
        specs = self._specs(table)
        indexes = [s.name for s in specs if isinstance(s, Index)]
        tallies = [s.name for s in specs if isinstance(s, Tally)]
        if fresh or not specs:
            conn.execute(doc_sql, doc_params)
            return {}
        rows = conn.execute(
            f"WITH w AS ({doc_sql}), "
            "e AS (DELETE FROM cf_entries WHERE idx = ANY(%s) AND doc_id = %s) "
            "DELETE FROM cf_tally_docs WHERE tally = ANY(%s) AND doc_id = %s RETURNING tally, pairs",
            (*doc_params, indexes, doc_id, tallies, doc_id)).fetchall()
        return {name: pairs for name, pairs in rows}

    def add(self, conn: Any, table: str, doc_id: int, doc: Doc | None, old: dict[str, list[list[Any]]]) -> None:
        """Insert ``doc``'s entries and pairs (None: deleted) and apply the change of every sum."""
        e_idx: list[str] = []
        e_key: list[str] = []
        e_ord: list[bytes] = []
        t_name: list[str] = []
        t_pairs: list[str] = []
        delta: dict[tuple[str, str], Any] = {}
        for name, pairs in old.items():
            for key, value in pairs:
                delta[(name, key)] = delta.get((name, key), 0) - value
        if doc is not None:
            for spec in self._specs(table):
                if isinstance(spec, Index):
                    for key, order in entries_of(spec, doc):
                        e_idx.append(spec.name)
                        e_key.append(key)
                        e_ord.append(order)
                else:
                    pairs = pairs_of(spec, doc)
                    if pairs:
                        t_name.append(spec.name)
                        t_pairs.append(json.dumps(pairs, ensure_ascii=False, allow_nan=False))
                        for key, value in pairs:
                            delta[(spec.name, key)] = delta.get((spec.name, key), 0) + value
        changes = [(name, key, repr(value)) for (name, key), value in delta.items() if value]
        if not (e_idx or t_name or changes):
            return
        conn.execute(
            "WITH s AS (UPDATE cf_indexes SET serial = serial + 1 WHERE name = ANY(%s)), "
            "e AS (INSERT INTO cf_entries (idx, key, ord, doc_id) "
            "  SELECT i, k, o, %s FROM unnest(%s::text[], %s::text[], %s::bytea[]) AS u(i, k, o)), "
            "t AS (INSERT INTO cf_tally_docs (tally, doc_id, pairs) "
            "  SELECT n, %s, p::jsonb FROM unnest(%s::text[], %s::text[]) AS u(n, p)) "
            "INSERT INTO cf_tally_sums (tally, key, total) "
            "  SELECT n, k, v::numeric FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(n, k, v) "
            "ON CONFLICT (tally, key) DO UPDATE SET total = cf_tally_sums.total + excluded.total",
            (sorted({c[0] for c in changes}), doc_id, e_idx, e_key, e_ord, doc_id, t_name, t_pairs,
             [c[0] for c in changes], [c[1] for c in changes], [c[2] for c in changes]))


def batches(conn: Any, table: str, size: int = 1000) -> Iterator[list[Doc]]:
    """Every document of ``table`` in id order, ``size`` at a time (keyset pages, so no cursor stays open
    while the caller writes on the same connection)."""
    last = 0
    while True:
        rows = conn.execute("SELECT id, doc FROM cf_docs WHERE tbl = %s AND id > %s ORDER BY id LIMIT %s",
                            (table, last, size)).fetchall()
        if not rows:
            return
        last = rows[-1][0]
        yield [doc for _id, doc in rows]


def rebuild(conn: Any, spec: Index | Tally) -> int:
    """Replace every row of ``spec`` with what its functions give for the documents of its table (inside
    the caller's transaction), written with ``COPY``; how many documents were read."""
    return rebuild_many(conn, [spec])


def rebuild_many(conn: Any, specs: list[Index | Tally]) -> int:
    """:func:`rebuild` for several indexes and tallies of one table in one pass over its documents: each
    document is read and parsed once, however many of them it feeds (a first start builds six on cases)."""
    if not specs:
        return 0
    tables = {spec.table for spec in specs}
    if len(tables) != 1:
        raise ValueError(f"rebuild_many takes the indexes of one table, not of {sorted(tables)}")
    indexes = [s for s in specs if isinstance(s, Index)]
    tallies = [s for s in specs if isinstance(s, Tally)]
    conn.execute("DELETE FROM cf_entries WHERE idx = ANY(%s)", ([s.name for s in indexes],))
    conn.execute("DELETE FROM cf_tally_docs WHERE tally = ANY(%s)", ([s.name for s in tallies],))
    conn.execute("DELETE FROM cf_tally_sums WHERE tally = ANY(%s)", ([s.name for s in tallies],))
    sums: dict[str, dict[str, Any]] = {s.name: {} for s in tallies}
    count = 0
    for docs in batches(conn, specs[0].table):
        count += len(docs)
        if indexes:
            with conn.cursor().copy("COPY cf_entries (idx, key, ord, doc_id) FROM STDIN") as copy:
                for doc in docs:
                    for spec in indexes:
                        for key, order in entries_of(spec, doc):
                            copy.write_row((spec.name, key, order, doc["id"]))
        if tallies:
            with conn.cursor().copy("COPY cf_tally_docs (tally, doc_id, pairs) FROM STDIN") as copy:
                for doc in docs:
                    for spec in tallies:
                        pairs = pairs_of(spec, doc)
                        if pairs:
                            copy.write_row((spec.name, doc["id"], json.dumps(pairs, ensure_ascii=False, allow_nan=False)))
                            mine = sums[spec.name]
                            for key, value in pairs:
                                mine[key] = mine.get(key, 0) + value
    if tallies:
        with conn.cursor().copy("COPY cf_tally_sums (tally, key, total) FROM STDIN") as copy:
            for name, totals in sums.items():
                for key, value in totals.items():
                    if value:
                        copy.write_row((name, key, repr(value)))
    return count


# -- queries ----------------------------------------------------------------------------------------


def _source(keys: list[str]) -> str:
    """The ``(ord, doc_id)`` under ``keys``: one key walks the B-tree in order; several are made distinct per
    document first (a document has the same order under each of its keys)."""
    if len(keys) == 1:
        return "(SELECT ord, doc_id FROM cf_entries WHERE idx = %(idx)s AND key = %(key)s)"
    return "(SELECT DISTINCT ord, doc_id FROM cf_entries WHERE idx = %(idx)s AND key = ANY(%(keys)s))"


def hits_sql(keys: list[str], newest: bool) -> str:
    """Every document under ``keys``, in order (streamed when a Python ``where`` must see them all)."""
    direction = "DESC" if newest else "ASC"
    return (f"SELECT d.doc FROM {_source(keys)} e JOIN cf_docs d ON d.tbl = %(tbl)s AND d.id = e.doc_id "
            f"ORDER BY e.ord {direction}, e.doc_id {direction}")


def page_sql(keys: list[str], newest: bool) -> str:
    """One page of documents under ``keys`` and, on each row, how many there are in all: one statement, so
    page and total agree without a snapshot transaction. The page is cut from the entries before the join,
    so a far offset skips index entries, never documents; the keys in ``%(omit)s`` are left out of each document
    in the database (a list row without its history is a fraction of the bytes)."""
    direction = "DESC" if newest else "ASC"
    return (f"SELECT d.doc - %(omit)s::text[], h.total FROM (SELECT ord, doc_id, count(*) OVER () AS total FROM {_source(keys)} e "
            f"ORDER BY ord {direction}, doc_id {direction} OFFSET %(offset)s LIMIT %(limit)s) h "
            f"JOIN cf_docs d ON d.tbl = %(tbl)s AND d.id = h.doc_id ORDER BY h.ord {direction}, h.doc_id {direction}")


def filtered_page_sql(keys: list[str], newest: bool, cond: str) -> str:
    """One page of documents under ``keys`` passing the SQL condition ``cond`` (over ``d.doc``), with how many
    pass in all on each row (``engine.store.pg_conditions``): the database filters, counts and pages."""
    direction = "DESC" if newest else "ASC"
    return (f"SELECT d.doc - %(omit)s::text[], count(*) OVER () FROM {_source(keys)} e {_DOC_OF_ENTRY} "
            f"WHERE {cond} ORDER BY e.ord {direction}, e.doc_id {direction} OFFSET %(offset)s LIMIT %(limit)s")


#: Each entry's document, fetched by its primary key. A LATERAL subquery with OFFSET 0 (which the planner does
#: not flatten) so the condition is tested on the documents the lookup found: the planner cannot estimate a
#: condition on JSONB (it guesses one row), and with that guess it scans every document of the database first.
_DOC_OF_ENTRY = "CROSS JOIN LATERAL (SELECT doc FROM cf_docs WHERE tbl = %(tbl)s AND id = e.doc_id OFFSET 0) d"


def filtered_count_sql(keys: list[str], cond: str) -> str:
    return f"SELECT count(*) FROM {_source(keys)} e {_DOC_OF_ENTRY} WHERE {cond}"


def group_count_sql() -> str:
    """How many documents are under any key of each group: ``%(groups)s`` and ``%(keys)s`` pair a group
    number with each key; a group with none is left out."""
    return ("SELECT u.g, count(DISTINCT e.doc_id) FROM unnest(%(groups)s::int[], %(keys)s::text[]) AS u(g, k) "
            "JOIN cf_entries e ON e.idx = %(idx)s AND e.key = u.k GROUP BY u.g")


def count_sql(keys: list[str]) -> str:
    if len(keys) == 1:
        return "SELECT count(*) FROM cf_entries WHERE idx = %(idx)s AND key = %(key)s"
    return "SELECT count(DISTINCT doc_id) FROM cf_entries WHERE idx = %(idx)s AND key = ANY(%(keys)s)"


def query_params(spec: Index, keys: list[str]) -> dict[str, Any]:
    return {"idx": spec.name, "tbl": spec.table, "key": keys[0] if keys else None, "keys": keys}


def window(rows: Iterator[Doc], offset: int, limit: int | None,
           where: Callable[[Doc], bool]) -> tuple[list[Doc], int]:
    """Apply ``where`` (to a shallow copy, as the other stores do), then ``offset`` and ``limit``; the page
    and how many passed in all (every row is read, since the total counts them all)."""
    end = None if limit is None else offset + limit
    docs: list[Doc] = []
    count = 0
    for doc in rows:
        if not where(doc.copy()):
            continue
        if count >= offset and (end is None or count < end):
            docs.append(doc)
        count += 1
    return docs, count
