"""The Store contract, checked against every implementation, then the file store's own promises."""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import pytest
import tinydb
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import (
    CorruptStoreError, MemoryStore, PostgresStore, Store, StoreError, TinyDBStore, open_store,
)
from tests.conftest import STORES, store_location


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    s = open_store(store_location(request.param, request, tmp_path))
    yield s
    s.close()


def insert(store: Store, table: str, doc: dict) -> int:
    with store.transaction() as tx:
        return tx.insert(table, doc)


# -- basic operations ------------------------------------------------------------------


def test_tables_lists_the_tables_holding_documents_sorted(store):
    assert store.tables() == []
    with store.transaction() as tx:
        tx.insert("b", {"x": 1})
        tx.insert("a", {"x": 2})
        doc_id = tx.insert("c", {"x": 3})
    with store.transaction() as tx:
        tx.delete("c", doc_id)
    assert store.tables() == ["a", "b"]


def test_replace_under_a_given_id_moves_the_id_counter_past_it(store):
    """What copying between stores relies on: ids are kept, and a later insert does not collide."""
    with store.transaction() as tx:
        tx.replace("cases", 7, {"title": "copied"})
        tx.replace("cases", 3, {"title": "copied too"})
    assert insert(store, "cases", {"title": "new"}) == 8


def test_insert_assigns_an_id_that_get_returns(store):
    doc_id = insert(store, "cases", {"title": "路灯坏了", "n": 1})

    assert store.get("cases", doc_id) == {"title": "路灯坏了", "n": 1, "id": doc_id}


def test_get_of_missing_document_or_table_is_none(store):
    insert(store, "cases", {"n": 1})

    assert store.get("cases", 99) is None
    assert store.get("nothing", 1) is None
    assert store.search("nothing") == []
    assert store.count("nothing") == 0


def test_search_filters_and_orders_by_numeric_id(store):
    with store.transaction() as tx:
        tx.replace("cases", 10, {"state": "open"})
        tx.replace("cases", 2, {"state": "open"})
        tx.replace("cases", 7, {"state": "closed"})
        tx.replace("cases", 1, {"state": "open"})

    assert [d["id"] for d in store.search("cases")] == [1, 2, 7, 10]
    assert [d["id"] for d in store.search("cases", lambda d: d["state"] == "open")] == [1, 2, 10]
    assert store.count("cases", lambda d: d["state"] == "open") == 3
    assert store.count("cases") == 4


def test_tinydb_queries_work_as_predicates(store):
    insert(store, "cases", {"state": "open", "data": {"priority": 3}})
    insert(store, "cases", {"state": "open", "data": {"priority": 1}})
    q = tinydb.Query()

    assert [d["id"] for d in store.search("cases", q.data.priority > 2)] == [1]


def test_replace_overwrites_or_creates_and_sets_the_id(store):
    doc_id = insert(store, "cases", {"n": 1, "extra": True})
    with store.transaction() as tx:
        tx.replace("cases", doc_id, {"n": 2, "id": 12345})
        tx.replace("cases", 50, {"n": 50})

    assert store.get("cases", doc_id) == {"n": 2, "id": doc_id}
    assert store.get("cases", 50) == {"n": 50, "id": 50}


def test_delete_removes_and_deleting_a_missing_document_is_a_no_op(store):
    a = insert(store, "cases", {"n": 1})
    b = insert(store, "cases", {"n": 2})
    with store.transaction() as tx:
        tx.delete("cases", a)
        tx.delete("cases", 999)
        tx.delete("elsewhere", 1)

    assert store.get("cases", a) is None
    assert [d["id"] for d in store.search("cases")] == [b]


def test_ids_increase_per_table_and_are_never_reused(store):
    ids = [insert(store, "cases", {"n": n}) for n in range(3)]
    other = insert(store, "users", {"name": "li"})
    with store.transaction() as tx:
        tx.delete("cases", ids[-1])
    after_delete = insert(store, "cases", {"n": 4})
    with store.transaction() as tx:
        tx.replace("cases", 100, {"n": 100})
    after_replace = insert(store, "cases", {"n": 5})

    assert ids == [1, 2, 3]
    assert other == 1
    assert after_delete == 4
    assert after_replace == 101


def test_ids_of_documents_inserted_and_deleted_in_one_transaction_are_free_again(store):
    insert(store, "cases", {"n": 1})
    with store.transaction() as tx:
        kept = tx.insert("cases", {"n": 2})
        gone = tx.insert("cases", {"n": 3})
        tx.delete("cases", gone)
        assert tx.insert("cases", {"n": 4}) == gone + 1  # not handed out twice inside the transaction
        tx.delete("cases", gone + 1)
    with store.transaction() as tx:
        tx.replace("other", 9, {"n": 9})
        tx.delete("other", 9)

    assert (kept, gone) == (2, 3)
    assert insert(store, "cases", {"n": 5}) == 3  # never committed, so free again
    assert insert(store, "other", {"n": 1}) == 1


def test_documents_must_be_plain_json(store):
    with pytest.raises(TypeError) as info, store.transaction() as tx:
        tx.insert("cases", {"when": object()})
    assert "not plain JSON" in str(info.value)
    with pytest.raises(TypeError):
        with store.transaction() as tx:
            tx.insert("cases", {"bad": float("nan")})

    doc_id = insert(store, "cases", {"pair": (1, 2), "by_number": {3: "c"}})
    # Exactly what a JSON file would give back, in both stores.
    assert store.get("cases", doc_id) == {"pair": [1, 2], "by_number": {"3": "c"}, "id": doc_id}
    assert store.count("cases") == 1


def test_bad_table_names_and_ids_are_refused(store):
    with pytest.raises(ValueError) as info, store.transaction() as tx:
        tx.insert("_meta", {})
    assert "reserved" in str(info.value)
    with pytest.raises(ValueError), store.transaction() as tx:
        tx.replace("cases", 0, {})
    with pytest.raises(ValueError):
        store.get("cases", "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.search("")


# -- isolation of copies ----------------------------------------------------------------


def test_callers_cannot_mutate_stored_documents(store):
    original = {"data": {"tags": ["a"]}, "n": 1}
    doc_id = insert(store, "cases", original)
    original["data"]["tags"].append("from-input")

    got = store.get("cases", doc_id)
    got["data"]["tags"].append("from-get")
    store.search("cases")[0]["data"]["tags"].append("from-search")
    with store.transaction() as tx:
        tx.get("cases", doc_id)["data"]["tags"].append("from-tx-get")
        tx.search("cases")[0]["n"] = 99

    assert store.get("cases", doc_id) == {"data": {"tags": ["a"]}, "n": 1, "id": doc_id}
    assert "id" not in original  # the caller's dict is not touched either


def test_pending_documents_are_copies_too(store):
    doc = {"tags": ["a"]}
    with store.transaction() as tx:
        doc_id = tx.insert("cases", doc)
        doc["tags"].append("later")
        tx.get("cases", doc_id)["tags"].append("from-get")

    assert store.get("cases", doc_id)["tags"] == ["a"]


def test_predicates_changing_top_level_keys_do_not_reach_the_store(store):
    insert(store, "cases", {"state": "open"})

    def sneaky(doc):
        doc["state"] = "hacked"
        del doc["id"]
        return isinstance(doc, dict)  # a real dict, like the documents callers get

    assert store.search("cases", sneaky) == [{"state": "open", "id": 1}]
    assert store.count("cases", sneaky) == 1
    with store.transaction() as tx:
        assert tx.search("cases", sneaky) == [{"state": "open", "id": 1}]
    assert store.get("cases", 1) == {"state": "open", "id": 1}


# -- transactions ---------------------------------------------------------------------


def test_an_exception_discards_every_write_of_the_transaction(store):
    keep = insert(store, "cases", {"n": 1})
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.insert("cases", {"n": 2})
            tx.replace("cases", keep, {"n": "changed"})
            tx.delete("cases", keep)
            tx.insert("users", {"name": "wang"})
            raise RuntimeError("boom")

    assert store.search("cases") == [{"n": 1, "id": keep}]
    assert store.search("users") == []
    assert insert(store, "cases", {"n": 3}) == keep + 1  # the discarded id is free again


def test_reads_inside_a_transaction_see_its_own_writes(store):
    a = insert(store, "cases", {"state": "open"})
    b = insert(store, "cases", {"state": "open"})
    seen_outside: list = []
    with store.transaction() as tx:
        c = tx.insert("cases", {"state": "new"})
        tx.replace("cases", a, {"state": "closed"})
        tx.delete("cases", b)
        tx.replace("cases", 1000, {"state": "far"})

        assert tx.get("cases", c) == {"state": "new", "id": c}
        assert tx.get("cases", a)["state"] == "closed"
        assert tx.get("cases", b) is None
        assert [d["id"] for d in tx.search("cases")] == [a, c, 1000]
        assert [d["id"] for d in tx.search("cases", lambda d: d["state"] != "closed")] == [c, 1000]
        assert tx.count("cases") == 3
        # Store-level reads on this thread go through the transaction...
        assert store.get("cases", c) is not None
        # ...but another thread sees only committed state until the block exits.
        reader = threading.Thread(target=lambda: seen_outside.append(store.search("cases")))
        reader.start()
        reader.join()

    assert [d["id"] for d in seen_outside[0]] == [a, b]
    assert [d["id"] for d in store.search("cases")] == [a, c, 1000]


def test_nested_transactions_join_the_outer_one(store):
    with store.transaction() as outer:
        outer.insert("cases", {"n": "outer"})
        with store.transaction() as inner:
            assert inner is outer
            inner.insert("cases", {"n": "inner"})
        assert store.count("cases") == 2  # same thread: sees the pending writes
        committed_seen_elsewhere: list = []
        t = threading.Thread(target=lambda: committed_seen_elsewhere.append(store.count("cases")))
        t.start()
        t.join()
        assert committed_seen_elsewhere == [0]  # the inner exit did not commit

    assert [d["n"] for d in store.search("cases")] == ["outer", "inner"]


def test_an_exception_in_a_nested_block_discards_only_that_block(store):
    with store.transaction() as tx:
        tx.insert("cases", {"n": "kept"})
        with pytest.raises(RuntimeError):
            with store.transaction() as inner:
                inner.insert("cases", {"n": "dropped"})
                inner.replace("cases", 1, {"n": "overwritten"})
                raise RuntimeError("inner")
        assert [d["n"] for d in tx.search("cases")] == ["kept"]
        tx.insert("cases", {"n": "after"})

    assert [d["n"] for d in store.search("cases")] == ["kept", "after"]


def test_an_exception_in_the_outer_block_discards_the_nested_writes_too(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            with store.transaction() as inner:
                inner.insert("cases", {"n": 1})
            raise RuntimeError("outer")

    assert store.count("cases") == 0


def test_a_finished_transaction_cannot_be_used(store):
    with store.transaction() as tx:
        tx.insert("cases", {"n": 1})

    with pytest.raises(StoreError) as info:
        tx.insert("cases", {"n": 2})
    assert "ended" in str(info.value)
    assert store.count("cases") == 1


def test_a_closed_store_refuses_work(tmp_path, pg_url):
    for s in (MemoryStore(), TinyDBStore(tmp_path / "db.json"), PostgresStore(pg_url)):
        s.close()
        with pytest.raises(StoreError):
            s.get("cases", 1)
        with pytest.raises(StoreError), s.transaction():
            pass


def test_counter_incremented_by_8_threads_50_times_each_is_exact(store):
    with store.transaction() as tx:
        tx.replace("counters", 1, {"value": 0})
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                with store.transaction() as tx:
                    value = tx.get("counters", 1)["value"]
                    tx.replace("counters", 1, {"value": value + 1})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert store.get("counters", 1)["value"] == 400


def test_reads_from_other_threads_during_writes_are_consistent(store):
    """Each transaction inserts a doc and bumps a counter; no reader ever sees one without the other."""
    with store.transaction() as tx:
        tx.replace("counters", 1, {"value": 0})
    done = threading.Event()
    problems: list[str] = []

    def write() -> None:
        for _ in range(100):
            with store.transaction() as tx:
                tx.insert("items", {"x": 1})
                tx.replace("counters", 1, {"value": tx.get("counters", 1)["value"] + 1})
        done.set()

    def read() -> None:
        while not done.is_set():
            before = store.get("counters", 1)["value"]
            items = store.count("items")
            after = store.get("counters", 1)["value"]
            if not before <= items <= after:
                problems.append(f"{before} <= {items} <= {after}")

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert problems == []
    assert store.count("items") == 100


# -- against a model ------------------------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("insert"), st.sampled_from(["a", "b"]), st.integers(0, 9)),
    st.tuples(st.just("replace"), st.sampled_from(["a", "b"]), st.integers(1, 12)),
    st.tuples(st.just("delete"), st.sampled_from(["a", "b"]), st.integers(1, 12)),
)
_transactions = st.lists(st.tuples(st.lists(_op, max_size=6), st.booleans()), max_size=12)


@pytest.mark.parametrize("kind", STORES)
@settings(max_examples=40, deadline=None)
@given(transactions=_transactions)
def test_the_store_behaves_like_a_dict_of_dicts(kind, transactions, pg_server):
    with tempfile.TemporaryDirectory() as tmp:
        path = pg_server.lease() if kind == "postgres" else os.path.join(tmp, "db.json")
        store = {"memory": MemoryStore, "tinydb": lambda: TinyDBStore(path, compact_bytes=300),
                 "postgres": lambda: PostgresStore(path)}[kind]()
        model: dict[str, dict[int, dict]] = {"a": {}, "b": {}}
        last = {"a": 0, "b": 0}
        for ops, fail in transactions:
            pending = {t: dict(docs) for t, docs in model.items()}
            pending_last = dict(last)
            try:
                with store.transaction() as tx:
                    for op, table, n in ops:
                        if op == "insert":
                            pending_last[table] += 1
                            assert tx.insert(table, {"n": n}) == pending_last[table]
                            pending[table][pending_last[table]] = {"n": n, "id": pending_last[table]}
                        elif op == "replace":
                            tx.replace(table, n, {"r": n})
                            pending[table][n] = {"r": n, "id": n}
                            pending_last[table] = max(pending_last[table], n)
                        else:
                            tx.delete(table, n)
                            pending[table].pop(n, None)
                        assert tx.search(table) == [pending[table][k] for k in sorted(pending[table])]
                    if fail:
                        raise RuntimeError("roll back")
            except RuntimeError:
                continue
            # The next id is the highest id ever committed + 1; an insert deleted again in
            # the same transaction was never committed, so its id may be handed out again.
            model = pending
            last = {t: max([last[t], *model[t]]) for t in last}
        for table in model:
            assert store.search(table) == [model[table][k] for k in sorted(model[table])]
        store.close()
        if kind != "memory":
            with (TinyDBStore(path) if kind == "tinydb" else PostgresStore(path)) as again:
                for table in model:
                    assert again.search(table) == [model[table][k] for k in sorted(model[table])]
        if kind == "postgres":
            pg_server.give_back(path)



# -- the TinyDB file store ---------------------------------------------------------------


def journal_lines(path: Path) -> list[bytes]:
    return Path(f"{path}.journal").read_bytes().splitlines(keepends=True)


def test_open_store_picks_the_implementation(tmp_path):
    assert isinstance(open_store(None), MemoryStore)
    assert isinstance(open_store("memory"), MemoryStore)
    file_store = open_store(str(tmp_path / "new" / "dir" / "db.json"))

    assert isinstance(file_store, TinyDBStore)
    assert (tmp_path / "new" / "dir").is_dir()
    file_store.close()


def test_reopening_sees_every_committed_write(tmp_path):
    path = tmp_path / "db.json"
    with TinyDBStore(path) as s:
        a = insert(s, "cases", {"title": "积分兑换", "n": 1})
        b = insert(s, "cases", {"n": 2})
        with s.transaction() as tx:
            tx.replace("cases", a, {"n": "changed"})
            tx.delete("cases", b)
            tx.insert("users", {"name": "王"})

    with TinyDBStore(path) as again:
        assert again.search("cases") == [{"n": "changed", "id": a}]
        assert again.search("users") == [{"name": "王", "id": 1}]
        assert insert(again, "cases", {"n": 3}) == b + 1  # deleted ids stay used after reopening


def test_after_compact_plain_tinydb_reads_the_snapshot(tmp_path):
    path = tmp_path / "db.json"
    with TinyDBStore(path) as s:
        for n in range(5):
            insert(s, "cases", {"n": n, "title": "微心愿"})
        s.compact()

        assert Path(f"{path}.journal").read_bytes() == b""
    with tinydb.TinyDB(path) as plain:
        assert plain.table("cases").get(doc_id=3) == {"n": 2, "title": "微心愿", "id": 3}
        assert len(plain.table("cases")) == 5


def test_compaction_keeps_data_and_later_writes_survive_reopening(tmp_path):
    path = tmp_path / "db.json"
    with TinyDBStore(path, compact_bytes=500) as s:
        for n in range(40):
            doc_id = insert(s, "cases", {"n": n, "pad": "x" * 50})
            if n % 3 == 0:
                with s.transaction() as tx:
                    tx.delete("cases", doc_id)
        expected = s.search("cases")
        snapshot_seq = json.loads(path.read_text())["_meta"]["1"]["seq"]
        assert snapshot_seq > 20  # compaction happened by itself, several times
        assert Path(f"{path}.journal").stat().st_size <= 500 + 200
        insert(s, "cases", {"n": "after"})

    with TinyDBStore(path) as again:
        assert again.search("cases") == [*expected, {"n": "after", "id": 41}]


def test_a_crash_between_the_two_steps_of_compaction_loses_and_repeats_nothing(tmp_path):
    path = tmp_path / "db.json"
    journal = Path(f"{path}.journal")
    with TinyDBStore(path) as s:
        a = insert(s, "cases", {"n": 1})
        insert(s, "cases", {"n": 2})
        with s.transaction() as tx:
            tx.delete("cases", a)
        old_journal = journal.read_bytes()
        s.compact()
        expected = s.search("cases")
    journal.write_bytes(old_journal)  # as if the process died before replacing the journal

    with TinyDBStore(path) as again:
        assert again.search("cases") == expected
        insert(again, "cases", {"n": 3})
        assert json.loads(journal_lines(path)[-1])["seq"] == 4
    with TinyDBStore(path) as third:
        assert [d["n"] for d in third.search("cases")] == [2, 3]


def test_a_torn_last_journal_line_is_ignored_then_cut_by_the_next_writer(tmp_path):
    path = tmp_path / "db.json"
    with TinyDBStore(path) as s:
        insert(s, "cases", {"n": 1})
        insert(s, "cases", {"n": 2})
    lines = journal_lines(path)
    torn = lines[-1][: len(lines[-1]) // 2]
    Path(f"{path}.journal").write_bytes(b"".join(lines[:-1]) + torn)  # died mid-write

    with TinyDBStore(path) as again:
        assert [d["n"] for d in again.search("cases")] == [1]
        assert insert(again, "cases", {"n": "new"}) == 2

    assert [json.loads(line)["seq"] for line in journal_lines(path)] == [1, 2]
    with TinyDBStore(path) as third:
        assert [d["n"] for d in third.search("cases")] == [1, "new"]


def test_a_last_line_with_a_bad_checksum_counts_as_torn(tmp_path):
    path = tmp_path / "db.json"
    with TinyDBStore(path) as s:
        insert(s, "cases", {"n": 1})
        insert(s, "cases", {"n": 2})
    data = bytearray(Path(f"{path}.journal").read_bytes())
    data[-5] ^= 0x01  # one flipped bit in the last entry, newline intact
    Path(f"{path}.journal").write_bytes(bytes(data))

    with TinyDBStore(path) as again:
        assert [d["n"] for d in again.search("cases")] == [1]


def test_damage_before_intact_entries_is_an_error_naming_the_journal(tmp_path):
    path = tmp_path / "db.json"
    with TinyDBStore(path) as s:
        for n in range(3):
            insert(s, "cases", {"n": n})
    lines = journal_lines(path)
    damaged = b"".join([lines[0], lines[1].replace(b'"n":1', b'"n":7'), lines[2]])
    Path(f"{path}.journal").write_bytes(damaged)

    with pytest.raises(CorruptStoreError) as info:
        TinyDBStore(path)
    assert f"{path}.journal" in str(info.value)
    assert f"byte {len(lines[0])}" in str(info.value)
    assert Path(f"{path}.journal").read_bytes() == damaged  # left for a person to look at


def test_an_unreadable_snapshot_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "db.json"
    with TinyDBStore(path) as s:
        insert(s, "cases", {"n": 1})
        s.compact()
    path.write_text('{"cases": {"1": {"n": 1}')  # someone edited it by hand

    with pytest.raises(CorruptStoreError) as info:
        TinyDBStore(path)
    assert str(path) in str(info.value)
    assert "not valid JSON" in str(info.value)
    assert path.read_text() == '{"cases": {"1": {"n": 1}'


def test_a_snapshot_that_is_not_tinydb_shaped_is_an_error(tmp_path):
    path = tmp_path / "db.json"
    path.write_text('{"cases": {"one": {"n": 1}}}')

    with pytest.raises(CorruptStoreError) as info:
        TinyDBStore(path)
    assert str(path) in str(info.value)
    assert "'one'" in str(info.value)


def test_a_missing_snapshot_behind_a_compacted_journal_is_an_error(tmp_path):
    path = tmp_path / "db.json"
    with TinyDBStore(path) as s:
        insert(s, "cases", {"n": 1})
        s.compact()
        insert(s, "cases", {"n": 2})
    path.unlink()

    with pytest.raises(CorruptStoreError) as info:
        TinyDBStore(path)
    assert "starts at transaction 2" in str(info.value)


def test_a_file_written_by_plain_tinydb_opens(tmp_path):
    path = tmp_path / "db.json"
    with tinydb.TinyDB(path) as plain:
        plain.table("cases").insert_multiple([{"n": 1}, {"n": 2}])

    with TinyDBStore(path) as s:
        assert s.search("cases") == [{"n": 1, "id": 1}, {"n": 2, "id": 2}]
        assert insert(s, "cases", {"n": 3}) == 3


def test_two_stores_on_one_file_see_each_other_across_compactions(tmp_path):
    """Two store objects have separate locks, exactly like two processes."""
    path = tmp_path / "db.json"
    with TinyDBStore(path, compact_bytes=400) as one, TinyDBStore(path, compact_bytes=400) as two:
        for n in range(30):
            writer, reader = (one, two) if n % 2 else (two, one)
            with writer.transaction() as tx:
                doc_id = tx.insert("cases", {"n": n})
            assert doc_id == n + 1
            assert reader.get("cases", doc_id) == {"n": n, "id": doc_id}
        one.compact()

        assert two.count("cases") == 30
        assert insert(two, "cases", {"n": 30}) == 31
        assert one.get("cases", 31) == {"n": 30, "id": 31}


@pytest.mark.parametrize("indexed", [False, True])
def test_replace_many_is_replace_of_each_under_its_own_id(store, indexed):
    """In bulk (PostgreSQL: COPY, when this process keeps no index on the table) or one by one, the same result:
    existing documents overwritten, a repeated id's last version kept, the id counter past the highest."""
    from engine.store.base import Index
    if indexed:
        store.add_index(Index("by_colour", "things", keys=lambda d: [("colour", d["colour"])]))
    with store.transaction() as tx:
        tx.insert("things", {"colour": "red"})
    with store.transaction() as tx:
        tx.replace_many("things", [{"id": 1, "colour": "blue"}, {"id": 7, "colour": "red", "n": 1.5},
                                   {"id": 4, "colour": "green"}, {"id": 7, "colour": "red", "n": 2}])
        assert [d["colour"] for d in tx.search("things")] == ["blue", "green", "red"]
    assert store.search("things") == [{"id": 1, "colour": "blue"}, {"id": 4, "colour": "green"},
                                      {"id": 7, "colour": "red", "n": 2}]
    with store.transaction() as tx:
        assert tx.insert("things", {"colour": "new"}) == 8
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.replace_many("things", [{"id": 1, "colour": "gone"}, {"id": 20, "colour": "gone"}])
            raise RuntimeError("rolled back")
    assert store.get("things", 1) == {"id": 1, "colour": "blue"} and store.get("things", 20) is None
    with store.transaction() as tx:
        assert tx.insert("things", {"colour": "after"}) == 9
    if indexed:
        assert [d["id"] for d in store.lookup("by_colour", [("colour", "red")]).docs] == [7]
    with store.transaction() as tx:
        tx.replace("things", 2, {"colour": "kept"})
        with pytest.raises(TypeError):
            tx.replace_many("things", [{"id": 31, "colour": "x"}, {"id": 30, "colour": float("nan")}])
    assert store.get("things", 2) == {"id": 2, "colour": "kept"}  # the transaction goes on after a refusal
    assert store.get("things", 30) is None
