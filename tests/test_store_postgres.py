"""What only the PostgreSQL store has to promise: order values that sort in SQL as in Python, indexes kept
across restarts by version, several store objects (processes) on one database, the schema check and
``civicflow db upgrade``, and clear sentences for an unreachable database. Real PostgreSQL throughout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import PostgresStore, StoreError, open_store
from engine.store.base import Index, Tally
from engine.store.pg_indexes import decode_key, encode_key, encode_order
from engine.store.pg_migrations import SCHEMA_VERSION, SchemaError
from engine.web.cli import cli

ROOT = Path(__file__).resolve().parents[1]


class Counted:
    """A key function that counts its calls, to tell reused index rows from recomputed ones."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, doc):
        self.calls += 1
        return self.fn(doc)


def by_owner(version: str = "1") -> Index:
    return Index("by_owner", "items", keys=Counted(lambda d: [("owner", d["owner"])]), order=lambda d: d["at"],
                 version=version)


def put(store, *docs):
    with store.transaction() as tx:
        return [tx.insert("items", d) for d in docs]


# -- encodings ------------------------------------------------------------------------------

_numbers = st.one_of(st.integers(-(2 ** 70), 2 ** 70), st.floats(allow_nan=False), st.booleans())
_kinds = [
    _numbers,
    st.text(),
    st.tuples(st.text(max_size=3), st.integers(-300, 300)),
    st.lists(st.text(alphabet="ab\x00é", max_size=3), max_size=4),
    st.lists(st.one_of(st.none(), _numbers), max_size=3).map(tuple),
]


@pytest.mark.parametrize("kind", range(len(_kinds)), ids=["numbers", "strings", "pairs", "lists", "tuples"])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_order_bytes_sort_exactly_as_python_sorts_the_values(kind, data):
    a, b = data.draw(_kinds[kind]), data.draw(_kinds[kind])
    if kind == 4:  # None compares with nothing in Python: only tuples Python can compare
        try:
            a < b
        except TypeError:
            return
    assert (a < b) == (encode_order(a) < encode_order(b))
    assert (a == b) == (encode_order(a) == encode_order(b))


def test_keys_that_python_finds_equal_are_one_key_and_come_back_as_tuples():
    assert encode_key(("n", 1)) == encode_key(("n", 1.0)) == encode_key(("n", True)) == encode_key(["n", 1])
    assert decode_key(encode_key(("wf", "award", ("x", 2), None))) == ("wf", "award", ("x", 2), None)
    assert decode_key(encode_key("plain")) == "plain"
    with pytest.raises(TypeError) as info:
        encode_key(("set", frozenset()))
    assert "frozenset" in str(info.value)


def test_order_values_sort_in_sql_as_in_python(pg_url):
    """Through the database: lookups order by the encoded bytes, ties by id."""
    values = [3, -1.5, 2 ** 64, 0, -0.0, 7.25, -(2 ** 40), 3.0]
    with PostgresStore(pg_url) as s:
        s.add_index(Index("by_n", "nums", keys=lambda d: ["all"], order=lambda d: d["n"]))
        with s.transaction() as tx:
            for n in values:
                tx.insert("nums", {"n": n})
        got = [d["id"] for d in s.lookup("by_n", ["all"], newest=False).docs]
    assert got == [i for _, i in sorted((n, i) for i, n in enumerate(values, 1))]


# -- indexes across restarts and processes --------------------------------------------------------


def test_the_same_index_version_reuses_its_rows_and_a_new_version_rebuilds(pg_url):
    with PostgresStore(pg_url) as s:
        s.add_index(by_owner())
        put(s, {"owner": "a", "at": "1"}, {"owner": "b", "at": "2"}, {"owner": "a", "at": "3"})
    again = by_owner()
    with PostgresStore(pg_url) as s:
        s.add_index(again)
        assert again.keys.calls == 0  # a restart: nothing computed
        assert [d["id"] for d in s.lookup("by_owner", [("owner", "a")]).docs] == [3, 1]
    changed = Index("by_owner", "items", keys=Counted(lambda d: [("at", d["at"])]), version="2")
    with PostgresStore(pg_url) as s:
        s.add_index(changed)
        assert changed.keys.calls == 3
        assert [d["id"] for d in s.lookup("by_owner", [("at", "2")]).docs] == [2]
        assert s.lookup("by_owner", [("owner", "a")]).total == 0  # the old version's rows are gone


def test_a_write_by_a_process_without_the_index_makes_the_next_declaration_rebuild_it(pg_url):
    with PostgresStore(pg_url) as s:
        s.add_index(by_owner())
        put(s, {"owner": "a", "at": "1"})
    with PostgresStore(pg_url) as unaware:  # e.g. a script that declares no indexes
        put(unaware, {"owner": "a", "at": "2"})
    again = by_owner()
    with PostgresStore(pg_url) as s:
        s.add_index(again)
        assert again.keys.calls == 2
        assert [d["id"] for d in s.lookup("by_owner", [("owner", "a")]).docs] == [2, 1]


def test_two_store_objects_on_one_database_share_documents_ids_indexes_and_tallies(pg_url):
    """Two store objects have separate connections and are exactly like two processes."""
    tally = Tally("per_owner", "items", values=lambda d: [(d["owner"], d["amount"])], version="1")
    with PostgresStore(pg_url) as one, PostgresStore(pg_url) as two:
        for s in (one, two):
            s.add_index(by_owner())
            s.add_index(tally)
        for n in range(10):
            writer = one if n % 2 else two
            assert put(writer, {"owner": "a", "at": f"{n:02d}", "amount": 1.5}) == [n + 1]
        assert [d["id"] for d in two.lookup("by_owner", [("owner", "a")], limit=3).docs] == [10, 9, 8]
        assert one.totals("per_owner") == two.totals("per_owner") == {"a": 15}
        with one.transaction() as tx:
            tx.delete("items", 10)
        assert two.totals("per_owner") == {"a": 13.5}
        assert two.tables() == ["items"]


def test_a_document_with_a_nul_character_is_refused_with_a_sentence(pg_url):
    with PostgresStore(pg_url) as s:
        with pytest.raises(TypeError) as info, s.transaction() as tx:
            tx.insert("items", {"text": "a\x00b"})
        assert "U+0000" in str(info.value)
        put(s, {"text": "a\\u0000b"})  # the six characters are fine
        assert s.get("items", 1)["text"] == "a\\u0000b"


def test_open_store_gives_a_postgres_store_for_a_url(pg_url):
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    store.close()


# -- reaching the database and its schema -------------------------------------------------------


def test_an_unreachable_database_is_one_sentence_without_the_password():
    with pytest.raises(StoreError) as info:
        PostgresStore("postgresql://civicflow:s3cret@127.0.0.1:1/civicflow")
    message = str(info.value)
    assert message.startswith("cannot reach the database civicflow@127.0.0.1:1/civicflow: ")
    assert "s3cret" not in message and "\n" not in message


@pytest.fixture
def blank_db(pg_server):
    url = pg_server.database(migrated=False)
    yield url
    pg_server.drop(url)


def test_a_database_behind_is_refused_until_db_upgrade_runs_and_upgrade_is_idempotent(blank_db):
    with pytest.raises(SchemaError) as info:
        PostgresStore(blank_db)
    assert str(info.value) == (f"database schema is at version 0, this Civicflow needs {SCHEMA_VERSION}: "
                               "run `civicflow db upgrade`")

    first = CliRunner().invoke(cli, ["db", "upgrade", "--url", blank_db])
    assert first.exit_code == 0, first.output
    assert f"schema upgraded from version 0 to {SCHEMA_VERSION}" in first.output
    second = CliRunner().invoke(cli, ["db", "upgrade"], env={"CIVICFLOW_DATABASE_URL": blank_db})
    assert second.exit_code == 0, second.output
    assert f"schema already at version {SCHEMA_VERSION}, nothing to do" in second.output
    with PostgresStore(blank_db) as s:
        put(s, {"owner": "a", "at": "1"})
        assert s.count("items") == 1


def test_a_database_newer_than_the_code_is_refused(pg_url):
    with PostgresStore(pg_url) as s:
        with s.transaction() as tx:
            tx._conn.execute("INSERT INTO cf_schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaError) as info:
        PostgresStore(pg_url)
    assert "newer than this Civicflow knows" in str(info.value)


def test_db_upgrade_without_a_database_says_what_to_give():
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"CIVICFLOW_DATABASE_URL": ""})
    assert result.exit_code != 0
    assert "set CIVICFLOW_DATABASE_URL or give --url" in result.output


def civicflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from engine.web.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=60)


@pytest.mark.parametrize("problem", ["behind", "unreachable", "not a url"])
def test_the_app_on_a_database_it_cannot_use_stops_with_one_line(blank_db, tmp_path, problem):
    url = {"behind": blank_db, "unreachable": "postgresql://civicflow:pw@127.0.0.1:1/x",
           "not a url": "mysql://civicflow@127.0.0.1/x"}[problem]
    done = civicflow("user", "list", env={"CIVICFLOW_DATABASE_URL": url, "CIVICFLOW_INSTANCE": str(tmp_path)})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    expected = {"behind": "database schema is at version 0, this Civicflow needs",
                "unreachable": "cannot reach the database civicflow@127.0.0.1:1/x",
                "not a url": "CIVICFLOW_DATABASE_URL must be a PostgreSQL URL"}[problem]
    assert lines[0].startswith("Civicflow cannot start: ") and expected in lines[0]
    assert "pw@" not in done.stderr


def test_the_app_uses_the_database_the_setting_names(pg_url, tmp_path):
    done = civicflow("demo", env={"CIVICFLOW_DATABASE_URL": pg_url, "CIVICFLOW_INSTANCE": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    with PostgresStore(pg_url) as s:
        assert s.count("users") > 0 and s.count("cases") > 0
    assert not (tmp_path / "civicflow.json").exists()  # nothing went to a TinyDB file


def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(pg_url):
    """gunicorn --preload forks with the store open: the child must not use or end the parent's sessions."""
    import gc

    with PostgresStore(pg_url) as s:
        put(s, {"owner": "a", "at": "1"})
        parent_session = s._pool._idle[0].info.backend_pid
        pid = os.fork()
        if pid == 0:  # the child: write through its own connection, close the store, collect what it inherited
            code = 1
            try:
                put(s, {"owner": "child", "at": "2"})
                code = 0 if s._pool._idle[0].info.backend_pid != parent_session else 2
                s.close()
                gc.collect()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert s._pool._idle[0].info.backend_pid == parent_session
        assert [d["owner"] for d in s.search("items")] == ["a", "child"]  # the parent's session still works


def test_a_kept_tally_is_read_again_once_any_process_changed_it_and_never_keeps_a_rolled_back_write(pg_url):
    """``totals`` keeps what it read while the tally's serial stays; a write by another store object (another
    process), a rebuild, or a tally read inside a transaction that then fails, must all show correctly."""
    tally = Tally("per_owner", "items", values=lambda d: [(d["owner"], d["amount"])], version="1")
    with PostgresStore(pg_url) as one, PostgresStore(pg_url) as two:
        for s in (one, two):
            s.add_index(by_owner())
            s.add_index(tally)
        put(one, {"owner": "a", "at": "1", "amount": 2})
        assert one.totals("per_owner") == {"a": 2}
        kept = one.totals("per_owner")
        kept["a"] = 99  # a copy: changing it changes nothing kept
        assert one.totals("per_owner") == {"a": 2}
        put(two, {"owner": "b", "at": "2", "amount": 3})
        assert one.totals("per_owner") == {"a": 2, "b": 3}
        with pytest.raises(RuntimeError):
            with one.transaction() as tx:
                tx.insert("items", {"owner": "a", "at": "3", "amount": 10})
                assert one.totals("per_owner") == {"a": 12, "b": 3}  # its own write, seen inside
                raise RuntimeError("rolled back")
        assert one.totals("per_owner") == two.totals("per_owner") == {"a": 2, "b": 3}
        with two.transaction() as tx:
            tx.replace("items", 1, {"owner": "c", "at": "4", "amount": 1})
        assert one.totals("per_owner") == {"b": 3, "c": 1}
        doubled = Tally("per_owner", "items", values=lambda d: [(d["owner"], 2 * d["amount"])], version="2")
        two.add_index(doubled)  # a rebuild by another process
        assert one.totals("per_owner") == {"b": 6, "c": 2}


def test_counts_of_many_groups_are_one_query_and_equal_counts_of_each(pg_url):
    with PostgresStore(pg_url) as s:
        s.add_index(by_owner())
        put(s, *({"owner": "abc"[n % 3], "at": f"{n:02d}"} for n in range(10)))
        groups = {"a": [("owner", "a")], "ab": [("owner", "a"), ("owner", "b"), ("owner", "a")], "none": [],
                  "nobody": [("owner", "z")], ("tuple", 1): [("owner", "c")]}
        assert s.count_groups("by_owner", groups) == {g: s.count_keys("by_owner", k) for g, k in groups.items()} \
            == {"a": 4, "ab": 7, "none": 0, "nobody": 0, ("tuple", 1): 3}
        with s.transaction():  # inside a transaction: the same answer, from its own connection
            assert s.count_groups("by_owner", groups)["ab"] == 7


def test_reading_streams_one_snapshot_while_writers_go_on(pg_url):
    """``reading()`` (what a backup writes from) takes no write lock and sees one committed state: a write
    committed while it streams neither waits for it nor shows up in it."""
    import threading

    from engine.store import postgres_store

    with PostgresStore(pg_url) as s, PostgresStore(pg_url) as other:
        put(s, *({"owner": "a", "at": f"{n:04d}"} for n in range(2 * postgres_store._STREAM_ROWS + 10)))
        with s.transaction() as tx:
            tx.insert("more", {"n": 1})
        with s.reading() as tables:
            name, docs = next(tables)
            assert name == "items"
            first = [next(docs) for _ in range(3)]
            done = threading.Event()

            def write() -> None:
                with other.transaction() as tx:
                    tx.replace("items", 800, {"owner": "changed", "at": "x"})
                    tx.insert("items", {"owner": "new", "at": "y"})
                    tx.insert("more", {"n": 2})
                done.set()
            worker = threading.Thread(target=write)
            worker.start()
            assert done.wait(10), "a writer waited for a backup's reading"
            rest = list(docs)
            more = [(n, list(d)) for n, d in tables]
        worker.join()
    items = first + rest
    assert [d["id"] for d in items] == list(range(1, 2 * postgres_store._STREAM_ROWS + 11))
    assert items[799]["owner"] == "a"
    assert more == [("more", [{"id": 1, "n": 1}])]


def test_a_backup_of_postgres_is_streamed_checked_and_restores_into_postgres(pg_url, pg_server, tmp_path):
    from engine import backup as backups
    from engine import ledger
    from engine.store import TinyDBStore

    with PostgresStore(pg_url) as s:
        put(s, *({"owner": "a", "at": f"{n:04d}", "text": "居民 " * n} for n in range(700)))
        with s.transaction() as tx:
            tx.replace(ledger.HEADS, 1, {"table": ledger.LEDGER, "seq": 0, "hash": ledger.GENESIS})
        manifest = backups.backup(s, tmp_path / "b")
        assert manifest.counts == {"items": 700, ledger.HEADS: 1}
        assert (tmp_path / "b" / "civicflow.json.offsets").exists()
        snapshot = TinyDBStore(tmp_path / "b" / "civicflow.json")  # an ordinary file store, opened lazily
        try:
            assert snapshot.search("items") == s.search("items")
        finally:
            snapshot.close()
        target_url = pg_server.lease()
        try:
            with PostgresStore(target_url) as target:
                backups.restore(target, tmp_path / "b")
                assert target.search("items") == s.search("items")
                assert target.search(ledger.HEADS) == s.search(ledger.HEADS)
                with target.transaction() as tx:
                    assert tx.insert("items", {"owner": "next", "at": "z"}) == 701
        finally:
            pg_server.give_back(target_url)
