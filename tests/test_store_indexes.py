"""Secondary indexes and tallies: kept in the same transaction as the write, on every store, across processes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import MemoryStore, Store, TinyDBStore, open_store
from tests.conftest import STORES, store_location
from engine.store.base import Index, Tally

BY_OWNER = Index("by_owner", "items", keys=lambda d: [("owner", d["owner"])] + [("tag", t) for t in d.get("tags", [])],
                 order=lambda d: d["at"])
SUMS = Tally("sums", "items", values=lambda d: [(d["owner"], d.get("amount", 0)), (("all",), 1)])


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    s = open_store(store_location(request.param, request, tmp_path))
    s.add_index(BY_OWNER)
    s.add_index(SUMS)
    yield s
    s.close()


def put(store: Store, *docs: dict) -> list[int]:
    with store.transaction() as tx:
        return [tx.insert("items", d) for d in docs]


def ids(page) -> list[int]:
    return [d["id"] for d in page.docs]


def test_lookup_returns_newest_first_with_total_and_pages(store):
    put(store, *({"owner": "a" if i % 2 else "b", "at": f"2026-01-{i + 1:02d}"} for i in range(10)))
    page = store.lookup("by_owner", [("owner", "a")], limit=2)
    assert ids(page) == [10, 8] and page.total == 5
    assert ids(store.lookup("by_owner", [("owner", "a")], offset=2, limit=2)) == [6, 4]
    assert ids(store.lookup("by_owner", [("owner", "a")], newest=False, limit=1)) == [2]
    both = store.lookup("by_owner", [("owner", "a"), ("owner", "b"), ("owner", "a")])
    assert ids(both) == list(range(10, 0, -1)) and both.total == 10
    assert store.lookup("by_owner", [("owner", "nobody")]).total == 0


def test_a_document_under_several_keys_comes_once(store):
    put(store, {"owner": "a", "tags": ["x", "y"], "at": "1"}, {"owner": "b", "tags": ["y"], "at": "2"})
    page = store.lookup("by_owner", [("tag", "x"), ("tag", "y"), ("owner", "a")])
    assert ids(page) == [2, 1] and page.total == 2
    assert store.count_keys("by_owner", [("tag", "y"), ("owner", "a")]) == 2


def test_replace_and_delete_move_documents_between_keys(store):
    one, two = put(store, {"owner": "a", "at": "1", "amount": 5}, {"owner": "a", "at": "2", "amount": 7})
    with store.transaction() as tx:
        tx.replace("items", one, {"owner": "b", "at": "3", "amount": 1})
        tx.delete("items", two)
    assert ids(store.lookup("by_owner", [("owner", "a")])) == []
    assert ids(store.lookup("by_owner", [("owner", "b")])) == [one]
    assert store.totals("sums") == {"b": 1, ("all",): 1}


def test_where_filters_before_paging_and_counts_what_passes(store):
    put(store, *({"owner": "a", "at": f"{i:02d}", "amount": i} for i in range(10)))
    page = store.lookup("by_owner", [("owner", "a")], where=lambda d: d["amount"] % 3 == 0, limit=2)
    assert [d["amount"] for d in page.docs] == [9, 6] and page.total == 4


def test_a_transaction_sees_its_own_writes_in_lookups(store):
    first, = put(store, {"owner": "a", "at": "1"})
    with store.transaction() as tx:
        new = tx.insert("items", {"owner": "a", "at": "2"})
        tx.replace("items", first, {"owner": "c", "at": "0"})
        assert ids(tx.lookup("by_owner", [("owner", "a")])) == [new]
        assert ids(store.lookup("by_owner", [("owner", "c")])) == [first]  # store reads join the transaction
        assert tx.first("by_owner", ("owner", "c"))["id"] == first
    assert ids(store.lookup("by_owner", [("owner", "a")])) == [new]


def test_a_failed_transaction_leaves_indexes_and_tallies_as_they_were(store):
    put(store, {"owner": "a", "at": "1", "amount": 2})
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.insert("items", {"owner": "a", "at": "2", "amount": 40})
            raise RuntimeError("boom")
    assert store.lookup("by_owner", [("owner", "a")]).total == 1
    assert store.totals("sums") == {"a": 2, ("all",): 1}


def test_lookup_results_are_copies(store):
    put(store, {"owner": "a", "at": "1", "tags": ["x"]})
    store.lookup("by_owner", [("owner", "a")]).docs[0]["tags"].append("y")
    assert store.get("items", 1)["tags"] == ["x"]


def test_an_index_declared_later_is_built_from_what_is_stored(store):
    put(store, {"owner": "a", "at": "1"}, {"owner": "b", "at": "2"})
    store.add_index(Index("late", "items", keys=lambda d: [d["owner"]]))
    assert ids(store.lookup("late", ["b"])) == [2]


def test_indexes_are_rebuilt_when_a_file_store_is_reopened(tmp_path):
    path = tmp_path / "db.json"
    with TinyDBStore(path) as s:
        s.add_index(BY_OWNER)
        put(s, {"owner": "a", "at": "1", "amount": 3})
        s.compact()
        put(s, {"owner": "a", "at": "2", "amount": 4})  # in the journal only
    with TinyDBStore(path) as s:
        s.add_index(BY_OWNER)
        s.add_index(SUMS)
        assert ids(s.lookup("by_owner", [("owner", "a")])) == [2, 1]
        assert s.totals("sums")["a"] == 7


def test_writes_of_another_process_reach_this_processes_indexes(tmp_path):
    """Two store objects on one file behave like two processes: the journal carries the index updates."""
    path = tmp_path / "db.json"
    with TinyDBStore(path, compact_bytes=300) as one, TinyDBStore(path, compact_bytes=300) as two:
        for s in (one, two):
            s.add_index(BY_OWNER)
            s.add_index(SUMS)
        for n in range(12):
            put(one if n % 2 else two, {"owner": "a", "at": f"{n:02d}", "amount": 1})
        assert one.lookup("by_owner", [("owner", "a")]).total == 12
        assert two.totals("sums") == one.totals("sums") == {"a": 12, ("all",): 12}


@pytest.mark.parametrize("kind", STORES)
@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["insert", "replace", "delete"]), st.integers(1, 6),
                              st.sampled_from("abc"), st.integers(0, 5)), max_size=30))
def test_the_index_always_agrees_with_a_scan(kind, ops, pg_server):
    with tempfile.TemporaryDirectory() as tmp:
        location = pg_server.lease() if kind == "postgres" else os.path.join(tmp, "db.json")
        store = MemoryStore() if kind == "memory" else open_store(location)
        try:
            check_index_against_a_scan(store, ops)
        finally:
            store.close()
        if kind == "postgres":
            pg_server.give_back(location)


def check_index_against_a_scan(store: Store, ops: list) -> None:
    store.add_index(BY_OWNER)
    store.add_index(SUMS)
    for op, target, owner, at in ops:
        with store.transaction() as tx:
            doc = {"owner": owner, "at": f"{at}", "amount": at}
            if op == "insert":
                tx.insert("items", doc)
            elif op == "replace":
                tx.replace("items", target, doc)
            else:
                tx.delete("items", target)
    docs = store.search("items")
    for owner in "abc":
        expected = sorted((d for d in docs if d["owner"] == owner), key=lambda d: (d["at"], d["id"]), reverse=True)
        assert ids(store.lookup("by_owner", [("owner", owner)])) == [d["id"] for d in expected]
        assert store.totals("sums").get(owner, 0) == sum(d["amount"] for d in docs if d["owner"] == owner)


def test_save_indexes_keeps_what_declaring_an_index_computed(tmp_path, caplog):
    """The first open after an index changed computes it from every document; save_indexes compacts so the
    next open restores it instead."""
    import logging

    path = tmp_path / "db.json"
    with TinyDBStore(path) as s:
        with s.transaction() as tx:
            for i in range(1200):
                tx.insert("items", {"owner": f"o{i % 7}", "at": f"{i:05d}"})
        s.compact()  # a sidecar without entries for BY_OWNER
    with caplog.at_level(logging.INFO, logger="engine.store.tinydb_store"):
        with TinyDBStore(path) as s:
            s.add_index(BY_OWNER)
            assert "computed from 1200 documents" in caplog.text
            s.save_indexes()
        caplog.clear()
        with TinyDBStore(path) as s:
            s.add_index(BY_OWNER)
            assert s.lookup("by_owner", [("owner", "o3")]).total == len([i for i in range(1200) if i % 7 == 3])
    assert "computed from" not in caplog.text


def test_count_groups_gives_count_keys_of_every_group(store):
    put(store, {"owner": "a", "tags": ["x", "y"], "at": "1"}, {"owner": "b", "tags": ["y"], "at": "2"},
        {"owner": "a", "at": "3"})
    groups = {"x": [("tag", "x")], "y or a": [("tag", "y"), ("owner", "a")], "empty": [], "nobody": [("owner", "z")]}
    assert store.count_groups("by_owner", groups) == {"x": 1, "y or a": 3, "empty": 0, "nobody": 0}
