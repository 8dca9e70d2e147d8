"""Declarative ``where`` conditions (engine.store.conditions): every store gives the same documents, totals and
pages for the same condition, PostgreSQL answering them in SQL (engine.store.pg_conditions)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import MemoryStore, Store, open_store
from engine.store import conditions as c
from engine.store.base import Index
from tests.conftest import STORES, store_location

BY_KIND = Index("by_kind", "things", keys=lambda d: [("kind", d.get("kind", "x"))], order=lambda d: d["at"])

#: Values a filtered field may hold, of every JSON type (a stray value of another type must never match).
VALUES = [
    "Hello World", "hello", "HELLO there", "居民反映情况ABC", "İstanbul", "ΣΊΣΥΦΟΣ ΟΔΟΣ", "Straße", "STRASSE",
    "50% off", "a_b", "back\\slash", "", "12", "012", "2026-11-03", "2026-11-30T09:00", "2026-12-01", "2025-01",
    12, 0, -3, 1.5, 0.1, 2.0, 1e16, True, False, None, [], ["a", "b"], ["x"], {}, {"a": 1},
]


def docs() -> list[dict]:
    found = [{"kind": "x" if i % 3 else "y", "at": f"{i:03d}", "data": {"f": v}} for i, v in enumerate(VALUES)]
    found += [{"kind": "x", "at": "900", "data": {}}, {"kind": "x", "at": "901"},
              {"kind": "x", "at": "902", "data": "not an object"}, {"kind": "x", "at": "903", "data": {"f": {"f": 1}}}]
    return found


CONDITIONS = [
    c.Contains(("data", "f"), "hello"), c.Contains(("data", "f"), "WORLD"), c.Contains(("data", "f"), "i̇stan"),
    c.Contains(("data", "f"), "σίσυφος"), c.Contains(("data", "f"), "οδος"), c.Contains(("data", "f"), "abc"),
    c.Contains(("data", "f"), "straße"), c.Contains(("data", "f"), "%"), c.Contains(("data", "f"), "_"),
    c.Contains(("data", "f"), "\\"), c.Contains(("data", "f"), "1"), c.Contains(("data", "f"), "true"),
    c.Equals(("data", "f"), "12"), c.Equals(("data", "f"), "hello"), c.Equals(("data", "f"), "2"),
    c.Equals(("data", "f"), "0"), c.Equals(("data", "f"), "true"),
    c.OneOf(("data", "f"), ("hello", "12", "a_b")), c.OneOf(("data", "f"), ()),
    c.Includes(("data", "f"), "a"), c.Includes(("data", "f"), "hello"),
    c.Truthy(("data", "f"), True), c.Truthy(("data", "f"), False),
    c.NumberRange(("data", "f"), 0, 12), c.NumberRange(("data", "f"), 0.1, None), c.NumberRange(("data", "f"), None, 0),
    c.NumberRange(("data", "f"), 1.5, 1.5), c.NumberRange(("data", "f"), 2, 1e16),
    c.TextRange(("data", "f"), "2026-11-01", ""), c.TextRange(("data", "f"), "", "2026-11"),
    c.TextRange(("data", "f"), "2026-11-01", "2026-11"), c.TextRange(("data", "f"), "H", "h"),
    c.All((c.Contains(("data", "f"), "l"), c.Contains(("data", "f"), "o"))), c.All(()), c.Nothing(),
    c.OneOf(("kind",), ("y",)), c.Contains(("data", "f", "f"), "1"),
]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    s = open_store(store_location(request.param, request, tmp_path))
    s.add_index(BY_KIND)
    with s.transaction() as tx:
        for d in docs():
            tx.insert("things", d)
    yield s
    s.close()


def ids(found) -> list[int]:
    return [d["id"] for d in (found.docs if hasattr(found, "docs") else found)]


def expected(store: Store, cond: c.Condition, kinds=("x", "y")) -> list[int]:
    """The reference: the condition's Python test over every document, newest (highest ``at``) first."""
    every = [d for d in store.search("things") if d.get("kind", "x") in kinds and cond.test(dict(d))]
    return [d["id"] for d in sorted(every, key=lambda d: (d["at"], d["id"]), reverse=True)]


def test_the_python_tests_mean_what_the_filters_promise():
    """Not circular: what a few conditions must find, written out by hand."""
    def found(cond: c.Condition) -> list:
        return [v for v in VALUES if cond.test({"data": {"f": v}})]
    assert found(c.Contains(("data", "f"), "hello")) == ["Hello World", "hello", "HELLO there"]
    assert found(c.Contains(("data", "f"), "οδος")) == ["ΣΊΣΥΦΟΣ ΟΔΟΣ"]  # a final Σ lowers to ς, not σ
    assert found(c.Equals(("data", "f"), "12")) == ["12", 12]
    assert found(c.NumberRange(("data", "f"), 0, 12)) == [12, 0, 1.5, 0.1, 2.0]  # not True, nor "12"
    assert found(c.TextRange(("data", "f"), "", "2026-11")) == ["", "12", "012", "2026-11-03", "2026-11-30T09:00",
                                                                "2025-01"]  # code point order: letters after digits
    assert found(c.Truthy(("data", "f"), False)) == ["", 0, False, None, [], {}]
    assert found(c.Includes(("data", "f"), "a")) == [["a", "b"]]


@pytest.mark.parametrize("cond", CONDITIONS, ids=repr)
def test_a_lookup_with_a_condition_finds_what_the_python_test_finds(store, cond):
    page = store.lookup("by_kind", [("kind", "x"), ("kind", "y")], where=cond)
    assert ids(page) == expected(store, cond) and page.total == len(ids(page))
    only_x = store.lookup("by_kind", [("kind", "x")], where=cond, newest=False)
    assert ids(only_x) == expected(store, cond, kinds=("x",))[::-1]
    assert ids(store.search("things", cond)) == sorted(expected(store, cond))
    assert store.count("things", cond) == len(expected(store, cond))


def test_a_condition_is_applied_before_paging_and_counted_in_all(store):
    cond = c.Truthy(("data", "f"), True)
    every = expected(store, cond)
    assert len(every) > 6
    page = store.lookup("by_kind", [("kind", "x"), ("kind", "y")], where=cond, offset=2, limit=3, omit=("data",))
    assert ids(page) == every[2:5] and page.total == len(every)
    assert all("data" not in d for d in page.docs)
    past = store.lookup("by_kind", [("kind", "x"), ("kind", "y")], where=cond, offset=500, limit=3)
    assert past.docs == [] and past.total == len(every)
    assert store.lookup("by_kind", [("kind", "x"), ("kind", "y")], where=cond, limit=0).total == len(every)


def test_a_transaction_filters_its_own_writes(store):
    with store.transaction() as tx:
        new = tx.insert("things", {"kind": "y", "at": "999", "data": {"f": "fresh HELLO"}})
        page = tx.lookup("by_kind", [("kind", "y")], where=c.Contains(("data", "f"), "hello"))
        assert ids(page)[0] == new and page.total == len(ids(page))
        assert new in ids(tx.search("things", c.Contains(("data", "f"), "fresh")))
        assert tx.count("things", c.Contains(("data", "f"), "fresh")) == 1


TEXTS = st.text(alphabet=st.sampled_from("aAbBİıΣσς_%\\ 居民-0159.:T"), max_size=6)
SCALARS = st.one_of(TEXTS, st.integers(-20, 20), st.floats(-20, 20, allow_nan=False).map(lambda x: round(x, 2)),
                    st.booleans(), st.none(), st.lists(TEXTS, max_size=2))
CONDS = st.one_of(
    st.builds(c.Contains, st.just(("data", "f")), TEXTS.filter(bool)),
    st.builds(c.Equals, st.just(("data", "f")), st.one_of(TEXTS, st.integers(-20, 20).map(str))),
    st.builds(c.TextRange, st.just(("data", "f")), TEXTS, TEXTS),
    st.builds(c.NumberRange, st.just(("data", "f")), st.none() | st.integers(-20, 20), st.none() | st.floats(-20, 20)),
    st.builds(c.Includes, st.just(("data", "f")), TEXTS),
    st.builds(c.Truthy, st.just(("data", "f")), st.booleans()),
)


@pytest.mark.parametrize("kind", [k for k in STORES if k != "memory"])
@settings(max_examples=25, deadline=None)
@given(values=st.lists(SCALARS, min_size=1, max_size=12), conds=st.lists(CONDS, min_size=1, max_size=4))
def test_any_condition_on_any_values_agrees_with_the_memory_store(kind, values, conds, pg_server):
    with tempfile.TemporaryDirectory() as tmp:
        location = pg_server.lease() if kind == "postgres" else os.path.join(tmp, "db.json")
        stores = [MemoryStore(), open_store(location)]
        try:
            for s in stores:
                s.add_index(BY_KIND)
                with s.transaction() as tx:
                    for i, v in enumerate(values):
                        tx.insert("things", {"kind": "x", "at": f"{i:03d}", "data": {"f": v}})
            for cond in [*conds, c.All(tuple(conds))]:
                memory, other = (s.lookup("by_kind", [("kind", "x")], where=cond, limit=5) for s in stores)
                assert (ids(other), other.total) == (ids(memory), memory.total), (cond, values)
        finally:
            for s in stores:
                s.close()
        if kind == "postgres":
            pg_server.give_back(location)
