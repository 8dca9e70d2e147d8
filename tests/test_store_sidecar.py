"""The file store's sidecar (``path.offsets``): opening without parsing gives exactly what a full parse gives,
and a missing, stale or damaged sidecar is noticed and never yields wrong data. Real files throughout."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import pytest
import tinydb
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import CorruptStoreError, TinyDBStore
from engine.store import tinydb_store
from engine.store.base import Index, Tally


class Counted:
    """A key function that counts its calls, to tell saved entries from recomputed ones."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, doc):
        self.calls += 1
        return self.fn(doc)


def by_place(version: str = "1", fn=None) -> Index:
    keys = Counted(fn or (lambda d: [("at", d["wf"], d["state"]), ("person", d["who"])]))
    return Index("by_place", "cases", keys=keys, order=lambda d: d["at"], version=version)


def per_state() -> Tally:
    return Tally("per_state", "cases", values=lambda d: [(d["state"], d.get("amount", 1)), (("all",), 1)], version="1")


def case(n: int, state: str = "open") -> dict:
    return {"wf": "wish" if n % 2 else "award", "state": state, "who": f"u{n % 3}", "at": f"2026-01-{n % 28 + 1:02d}",
            "amount": n, "title": "微心愿" * (n % 4), "nested": {"list": [n, {"x": None}], "f": n / 7}}


def fill(store: TinyDBStore) -> None:
    """Writes of every kind, some compacted into the snapshot, some left in the journal."""
    with store.transaction() as tx:
        for n in range(1, 41):
            tx.insert("cases", case(n))
        tx.insert("users", {"name": "王"})
    with store.transaction() as tx:
        tx.delete("cases", 3)
        tx.replace("cases", 5, case(5, "done"))
        tx.replace("cases", 100, case(100))
    store.compact()
    with store.transaction() as tx:  # journal only
        tx.insert("cases", case(41, "done"))
        tx.replace("cases", 7, case(7, "closed"))
        tx.delete("cases", 8)
        tx.insert("users", {"name": "李"})


def everything(store: TinyDBStore) -> dict:
    """All a reader can see: every table, every lookup of every key (both directions), the tally, next ids."""
    docs = store.search("cases")
    keys = {k for d in docs for k in [("at", d["wf"], d["state"]), ("person", d["who"])]}
    seen = {
        "cases": docs, "users": store.search("users"), "totals": store.totals("per_state"),
        "lookups": {repr(k): ([d["id"] for d in store.lookup("by_place", [k]).docs],
                              [d["id"] for d in store.lookup("by_place", [k], newest=False, limit=3).docs])
                    for k in sorted(keys)},
        "gets": [store.get("cases", i) for i in range(1, 102)],
    }
    try:
        with store.transaction() as tx:
            seen["next"] = (tx.insert("cases", case(0)), tx.insert("users", {}))
            raise Probed  # roll back: looking must not change the store
    except Probed:
        pass
    return seen


class Probed(Exception):
    pass


def open_declared(path: Path, index: Index | None = None, **kw) -> TinyDBStore:
    store = TinyDBStore(path, **kw)
    store.add_index(index or by_place())
    store.add_index(per_state())
    return store


def without_sidecar(path: Path, tmp_path: Path) -> Path:
    """A copy of the store's files with the sidecar left out."""
    other = tmp_path / "copy"
    other.mkdir()
    for suffix in ("", ".journal"):
        if Path(f"{path}{suffix}").exists():
            shutil.copy(f"{path}{suffix}", f"{other / 'db.json'}{suffix}")
    return other / "db.json"


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "db.json"
    with open_declared(path) as store:
        fill(store)
    return path


def test_opening_through_the_sidecar_gives_what_a_full_parse_gives(filled, tmp_path):
    plain = without_sidecar(filled, tmp_path)
    index = by_place()
    with open_declared(filled, index) as lazy:
        assert lazy._mapped is not None  # documents are handles into the mapped snapshot
        assert index.keys.calls == 2  # only for the documents the journal wrote (41 and 7), not all 40
        lazy_view = everything(lazy)
    full_index = by_place()
    with open_declared(plain, full_index) as full:
        assert full._mapped is None
        assert full_index.keys.calls >= 40
        full_view = everything(full)

    assert lazy_view == full_view
    assert lazy_view["totals"]["done"] == 5 + 41 and len(lazy_view["cases"]) == 40
    assert lazy_view["next"] == (102, 3)


def test_an_index_declared_later_still_finds_its_saved_entries(filled):
    index = by_place()
    with TinyDBStore(filled) as store:
        with store.transaction() as tx:  # written after opening, before the index is declared
            tx.replace("cases", 1, case(1, "closed"))
        store.add_index(index)
        assert index.keys.calls == 3  # the 2 documents of the journal + the one written since opening
        assert [d["id"] for d in store.lookup("by_place", [("at", "wish", "closed")]).docs] == [7, 1]


def test_a_changed_index_version_computes_the_index_from_the_documents(filled, caplog):
    changed = by_place("2", fn=lambda d: [("title-length", len(d["title"]))])
    with caplog.at_level(logging.INFO, logger="engine.store.tinydb_store"), open_declared(filled, changed) as store:
        assert changed.keys.calls == 40
        assert {d["id"] for d in store.lookup("by_place", [("title-length", 0)]).docs} == \
            {d["id"] for d in store.search("cases") if not d["title"]}
    assert "changed" in caplog.text and "'by_place'" in caplog.text


def test_compaction_copies_unparsed_documents_and_plain_tinydb_reads_the_result(filled):
    with open_declared(filled) as store:
        with store.transaction() as tx:
            new = tx.insert("cases", case(42))
        before = store.search("cases")
        store.compact()
        assert all(type(v) is tuple for v in store._tables["cases"].values())  # all handles again
        assert store.search("cases") == before
    with tinydb.TinyDB(filled) as plain:
        assert plain.table("cases").get(doc_id=new) == {**case(42), "id": new}
        assert len(plain.table("cases")) == len(before)
    with open_declared(filled) as again:
        assert again.search("cases") == before


def test_parsed_documents_do_not_all_stay_in_memory(filled):
    with TinyDBStore(filled, cache_docs=5) as store:
        docs = store.search("cases")
        assert len(docs) == 40
        assert len(store._cache) <= 5
        assert store.get("cases", 2) == docs[1]


def test_values_json_reads_differently_from_orjson_survive_a_lazy_reopen(tmp_path):
    path = tmp_path / "db.json"
    odd = {"big": 2**70, "negative": -(2**64), "surrogate": "\ud800", "digits": "1" * 25, "tiny": 5e-324}
    with TinyDBStore(path) as store:
        with store.transaction() as tx:
            tx.insert("t", odd)
        store.compact()
    with TinyDBStore(path) as store:
        assert store._mapped is not None
        assert store.get("t", 1) == {**odd, "id": 1}
        assert type(store.get("t", 1)["big"]) is int


def test_tuple_orders_are_saved_and_non_json_keys_are_recomputed(tmp_path):
    path = tmp_path / "db.json"
    tupled = Index("tupled", "t", keys=lambda d: [(d["k"],)], order=lambda d: (d["a"], (d["b"], "x")))
    odd = Index("odd", "t", keys=Counted(lambda d: [frozenset([d["k"]])]))
    with TinyDBStore(path) as store:
        store.add_index(tupled)
        store.add_index(odd)
        with store.transaction() as tx:
            for n in range(6):
                tx.insert("t", {"k": n % 2, "a": n % 3, "b": n})
        store.compact()
    odd = Index("odd", "t", keys=Counted(lambda d: [frozenset([d["k"]])]))
    with TinyDBStore(path) as store:
        store.add_index(tupled)
        store.add_index(odd)
        assert odd.keys.calls == 6  # not saved: computed
        assert store._indexes.postings["tupled"][(0,)] == [((0, (0, "x")), 1), ((1, (4, "x")), 5), ((2, (2, "x")), 3)]
        with store.transaction() as tx:  # new entries sort among the restored ones
            tx.insert("t", {"k": 0, "a": 1, "b": 9})
        assert [d["id"] for d in store.lookup("tupled", [(0,)]).docs] == [3, 7, 5, 1]
        assert [d["id"] for d in store.lookup("odd", [frozenset([1])]).docs] == [6, 4, 2]


# -- a sidecar that does not belong to the snapshot ---------------------------------------------


def check_full_load(path: Path, expected: dict) -> None:
    with open_declared(path) as store:
        assert store._mapped is None  # the sidecar was not trusted
        assert everything(store) == expected
        with store.transaction() as tx:  # the next commit compacts, which writes a fresh sidecar
            tx.insert("users", {"name": "赵"})
        expected["users"] = store.search("users")
    with open_declared(path) as store:
        assert store._mapped is not None
        assert store.search("users") == expected["users"]


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped-bit", "other-format", "empty"])
def test_a_missing_or_damaged_sidecar_is_ignored(filled, damage, caplog):
    with open_declared(filled) as store:
        expected = everything(store)
    sidecar = Path(f"{filled}.offsets")
    raw = sidecar.read_bytes()
    if damage == "missing":
        sidecar.unlink()
    elif damage == "truncated":
        sidecar.write_bytes(raw[: len(raw) // 2])
    elif damage == "flipped-bit":
        data = bytearray(raw)
        data[len(data) // 2] ^= 0x04
        sidecar.write_bytes(bytes(data))
    elif damage == "other-format":
        sidecar.write_bytes(raw.replace(b"civicflow-offsets 1 ", b"civicflow-offsets 9 ", 1))
    else:
        sidecar.write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="engine.store.tinydb_store"):
        check_full_load(filled, expected)
    assert str(filled) in caplog.text


def test_a_sidecar_of_an_older_snapshot_is_ignored(filled):
    """As after a crash between replacing the snapshot and replacing the sidecar."""
    old = Path(f"{filled}.offsets").read_bytes()
    with open_declared(filled) as store:
        with store.transaction() as tx:
            tx.replace("cases", 2, case(2, "done"))
        store.compact()
        expected = everything(store)
    Path(f"{filled}.offsets").write_bytes(old)
    check_full_load(filled, expected)


def test_a_sidecar_of_another_snapshot_with_the_same_size_and_seq_is_ignored(filled):
    """Two compactions with nothing written between give snapshots alike but for their token."""
    with open_declared(filled) as store:
        store.compact()
        first = Path(f"{filled}.offsets").read_bytes()
        size = filled.stat().st_size
        store.compact()
        expected = everything(store)
    assert filled.stat().st_size == size
    body = tinydb_store.decode_sidecar(first)
    assert body["snapshot"]["size"] == size and body["snapshot"]["seq"] == expected_seq(filled)
    Path(f"{filled}.offsets").write_bytes(first)  # only the token tells the two snapshots apart
    check_full_load(filled, expected)


def expected_seq(path: Path) -> int:
    return json.loads(path.read_text())["_meta"]["1"]["seq"]


def test_a_sidecar_pointing_at_the_wrong_bytes_is_an_error_not_wrong_data(filled):
    with open_declared(filled) as store:
        store.compact()
        expected_one = store.get("cases", 1)
    body = tinydb_store.decode_sidecar(Path(f"{filled}.offsets").read_bytes())
    keys, offsets, lengths = body["tables"]["cases"]
    offsets[0], offsets[1], lengths[0], lengths[1] = offsets[1], offsets[0], lengths[1], lengths[0]
    Path(f"{filled}.offsets").write_bytes(tinydb_store.encode_sidecar(body))

    with TinyDBStore(filled) as store:
        with pytest.raises(CorruptStoreError) as info:
            store.get("cases", 1)
        assert f"{filled}.offsets" in str(info.value) and "cases/1" in str(info.value)
    Path(f"{filled}.offsets").unlink()
    with TinyDBStore(filled) as store:
        assert store.get("cases", 1) == expected_one


# -- crashes around writing the sidecar ---------------------------------------------------------


@pytest.mark.parametrize("fail_at", ["snapshot", "sidecar", "journal"])
def test_a_failure_at_any_step_of_compaction_loses_nothing(filled, fail_at, monkeypatch):
    """Each step raising (disk full, or the process dying there) leaves files that open to every commit."""
    targets = {"snapshot": str(filled), "sidecar": f"{filled}.offsets", "journal": f"{filled}.journal"}
    real = TinyDBStore._replace_file

    def failing(self, path, data):
        if path == targets[fail_at]:
            raise OSError(28, "No space left on device")
        return real(self, path, data)

    with open_declared(filled) as store:
        with store.transaction() as tx:
            tx.insert("cases", case(50))
        monkeypatch.setattr(TinyDBStore, "_replace_file", failing)
        with store.transaction() as tx:  # committed; its compaction fails and is only logged
            tx.replace("cases", 50, case(50, "done"))
            store.compact_bytes = 1
        store.compact_bytes = None
        assert store.get("cases", 50)["state"] == "done"
        expected = everything(store)
        monkeypatch.setattr(TinyDBStore, "_replace_file", real)

    with open_declared(filled) as again:
        # A failed sidecar leaves the old one, which names the old snapshot: the store reads the whole file.
        assert (again._mapped is None) == (fail_at == "sidecar")
        assert everything(again) == expected
    with open_declared(filled) as third:
        with third.transaction() as tx:
            tx.insert("cases", case(51))
        third.compact()
        assert third.get("cases", 50)["state"] == "done"


def test_an_index_no_process_declares_is_carried_through_compactions(tmp_path):
    path = tmp_path / "db.json"
    with open_declared(path) as declaring:
        fill(declaring)
        declaring.compact()
    with TinyDBStore(path) as other:  # e.g. a command-line tool: declares nothing, writes, compacts
        with other.transaction() as tx:
            tx.replace("cases", 1, case(1, "moved"))
            tx.insert("cases", case(60))
        other.compact()
        with other.transaction() as tx:
            tx.delete("cases", 2)
    index = by_place()
    with open_declared(path, index) as store:
        assert index.keys.calls == 2  # ids 1 and 60, stale in the sidecar (2, deleted since, needs no call)
        ids = [d["id"] for d in store.lookup("by_place", [("at", "wish", "moved")]).docs]
        assert ids == [1]
        for key in [("person", "u0"), ("person", "u1"), ("at", "award", "open")]:
            expected = sorted((d for d in store.search("cases") if key in
                               [("at", d["wf"], d["state"]), ("person", d["who"])]),
                              key=lambda d: (d["at"], d["id"]), reverse=True)
            assert [d["id"] for d in store.lookup("by_place", [key]).docs] == [d["id"] for d in expected]
        assert store.totals("per_state")[("all",)] == store.count("cases")


def test_two_stores_reload_each_others_snapshots_through_the_sidecar(tmp_path):
    path = tmp_path / "db.json"
    with open_declared(path, compact_bytes=2000) as one, open_declared(path, compact_bytes=2000) as two:
        for n in range(1, 31):
            writer, reader = (one, two) if n % 2 else (two, one)
            with writer.transaction() as tx:
                tx.insert("cases", case(n))
            assert reader.get("cases", n) == {**case(n), "id": n}
            assert reader.lookup("by_place", [("person", f"u{n % 3}")]).docs[0]["id"] in range(1, n + 1)
        assert json.loads(path.read_text())["_meta"]["1"]["seq"] > 5
        assert one._mapped is not None and two._mapped is not None
        assert everything(one) == everything(two)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["insert", "replace", "delete", "compact", "reopen"]),
                          st.integers(1, 8), st.sampled_from(["open", "done", "closed"])), max_size=25))
def test_after_any_writes_compactions_and_reopens_a_lazy_open_equals_a_full_one(steps):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "db.json"
        store = open_declared(path)
        for op, n, state in steps:
            if op == "compact":
                store.compact()
            elif op == "reopen":
                store.close()
                store = open_declared(path)
            else:
                with store.transaction() as tx:
                    if op == "insert":
                        tx.insert("cases", case(n, state))
                    elif op == "replace":
                        tx.replace("cases", n, case(n, state))
                    else:
                        tx.delete("cases", n)
        seen = everything(store)
        store.close()
        with open_declared(path) as lazy:
            assert everything(lazy) == seen
        with open_declared(without_sidecar(path, Path(tmp))) as full:
            assert full._mapped is None
            assert everything(full) == seen
