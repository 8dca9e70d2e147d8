"""Backup, restore and ``db copy``: consistent while others write, refused when damaged, ids kept, no traceback.

Everything runs on real stores (memory and TinyDB files) and, for the commands, the real ``civicflow`` CLI in a
subprocess; concurrent writers are real processes on the same store file.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine import backup as backups
from engine import transfer
from engine import ledger
from engine.store import MemoryStore, Store, TinyDBStore
from engine.store.base import Index

from .backup_worker import declare_ledger_indexes
from .conftest import ROOT

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def new_store(kind: str, path: Path) -> Store:
    store: Store = MemoryStore() if kind == "memory" else TinyDBStore(path)
    declare_ledger_indexes(store)
    return store


def fill(store: Store, cases: int = 5, posts: int = 4) -> None:
    """Cases, users, notifications, uploads' metadata and both hash-chained ledgers, as the app writes them."""
    with store.transaction() as tx:
        for i in range(cases):
            tx.insert("cases", {"workflow": "wishes", "state": "open", "title": f"case {i}", "data": {"n": i}})
        tx.insert("users", {"username": "resident", "roles": ["resident"], "org_unit": "renjia"})
        tx.insert("notifications", {"to": "resident", "case": 1, "read": False, "at": "2026-12-01T09:00:00"})
        tx.insert("uploads", {"key": "abc.png", "name": "photo.png", "size": 3, "content_type": "image/png"})
        for i in range(posts):
            ledger.post(tx, "resident", 5, reason={"en": "help"}, case_id=1, workflow="wishes",
                        transition="done", by="staff", now=NOW)
            ledger.append(tx, ledger.PUBLICATIONS, {"case": i + 1, "state": "public", "content": "x" * 64})


def everything(store: Store) -> dict[str, list[dict[str, Any]]]:
    return transfer.read_all(store)


@pytest.fixture(params=["memory", "tinydb"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    store = new_store(request.param, tmp_path / "source" / "civicflow.json")
    fill(store)
    yield store
    store.close()


# -- backup and restore ------------------------------------------------------------------------


def test_a_backup_is_an_openable_store_with_a_manifest(source: Store, tmp_path: Path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "abc.png").write_bytes(b"\x89PNG\r\n\x1a\nxyz")
    manifest = backups.backup(source, tmp_path / "b", uploads, now=NOW)
    assert manifest.counts == {"cases": 5, "chain_heads": 2, "ledger": 4, "notifications": 1,
                               "points_accounts": 1, "publications": 4, "uploads": 1, "users": 1}
    assert manifest.chains[ledger.LEDGER]["seq"] == 4 and manifest.uploads == ["uploads/abc.png"]
    assert (tmp_path / "b" / "uploads" / "abc.png").read_bytes() == b"\x89PNG\r\n\x1a\nxyz"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["civicflow.json", "civicflow.json.offsets", "manifest.json", "uploads"]
    from tinydb import TinyDB  # the backup's store is plain TinyDB JSON, readable without Civicflow
    with TinyDB(tmp_path / "b" / "civicflow.json") as db:
        assert len(db.table("cases")) == 5
    opened = TinyDBStore(tmp_path / "b" / "civicflow.json")
    assert everything(opened) == everything(source)
    opened.close()


def test_journaled_writes_not_yet_compacted_are_in_the_backup(tmp_path: Path):
    """The bug this replaces: copying civicflow.json alone loses every write since the last compaction."""
    store = new_store("tinydb", tmp_path / "live" / "civicflow.json")
    fill(store)
    store.compact()
    with store.transaction() as tx:
        tx.insert("cases", {"title": "written after the snapshot"})
    assert os.path.getsize(store.journal_path) > 0  # still in the journal only
    assert len(json.loads(Path(store.path).read_text())["cases"]) == 5  # a copy of the .json would lack it
    backups.backup(store, tmp_path / "b")
    target = new_store("tinydb", tmp_path / "restored" / "civicflow.json")
    backups.restore(target, tmp_path / "b")
    assert everything(target) == everything(store)
    assert target.search("cases")[-1]["title"] == "written after the snapshot"
    store.close()
    target.close()


@pytest.mark.parametrize("kind", ["memory", "tinydb"])
def test_restore_gives_back_exactly_what_was_backed_up_and_ids_continue(source: Store, tmp_path: Path, kind: str):
    backups.backup(source, tmp_path / "b")
    target = new_store(kind, tmp_path / "target" / "civicflow.json")
    backups.restore(target, tmp_path / "b")
    assert everything(target) == everything(source)
    assert ledger.verify(target) == []
    with target.transaction() as tx:  # the next entry links to the restored chain, the next case gets id 6
        ledger.post(tx, "resident", 1, reason={}, case_id=None, workflow=None, transition=None, by="x", now=NOW)
        assert tx.insert("cases", {"title": "new"}) == 6
    assert ledger.verify(target) == []
    target.close()


def test_restore_refuses_a_non_empty_store_unless_forced(source: Store, tmp_path: Path):
    backups.backup(source, tmp_path / "b")
    target = new_store("tinydb", tmp_path / "target" / "civicflow.json")
    with target.transaction() as tx:
        for i in range(8):
            tx.insert("cases", {"title": f"other {i}"})
    before = everything(target)
    with pytest.raises(backups.BackupError) as refused:
        backups.restore(target, tmp_path / "b")
    assert "is not empty (8 cases)" in str(refused.value) and "--force" in str(refused.value)
    assert everything(target) == before
    backups.restore(target, tmp_path / "b", force=True)
    assert everything(target) == everything(source)  # cases 6..8 of the old data are gone
    target.close()


def _tamper(folder: Path, edit: Any, fix_checksums: bool) -> None:
    path = folder / "civicflow.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    if fix_checksums:  # someone who knows the format: only the ledger's own hash chain can tell
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["files"]["civicflow.json"] = {"size": path.stat().st_size, "sha256": backups.sha256_file(path)}
        manifest["checksum"] = backups.manifest_checksum(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))


def _edit_in_place(path: Path) -> None:
    """One ledger amount changed, the file's size kept (only the sha256 can tell)."""
    text = path.read_text()
    edited = re.sub(r'("amount":\s*)5', r"\g<1>9", text, count=1)
    assert edited != text and len(edited) == len(text)
    path.write_text(edited)


def _edit_amount(data: dict[str, Any]) -> None:
    data["ledger"]["2"]["amount"] = 500


def _drop_case(data: dict[str, Any]) -> None:
    del data["cases"]["3"]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda f: _edit_in_place(f / "civicflow.json"), "civicflow.json was changed after the backup was made"),
    (lambda f: _tamper(f, _edit_amount, True), "ledger broken: ledger entry 2: its content was changed"),
    (lambda f: _tamper(f, _drop_case, True), "table 'cases' has 4 documents, 5 expected"),
    (lambda f: os.truncate(f / "civicflow.json", 100), "civicflow.json is 100 bytes"),
    (lambda f: (f / "uploads" / "abc.png").write_bytes(b"other"), "uploads/abc.png is 5 bytes"),
    (lambda f: (f / "uploads" / "abc.png").unlink(), "uploads/abc.png is missing"),
    (lambda f: (f / "manifest.json").write_text((f / "manifest.json").read_text().replace('"ledger": 4', '"ledger": 3')),
     "manifest.json was changed after the backup was made"),
    (lambda f: (f / "manifest.json").write_text("{"), "manifest.json is damaged (not valid JSON"),
    (lambda f: (f / "manifest.json").unlink(), "is not a Civicflow backup"),
])
def test_restore_refuses_a_damaged_backup_and_changes_nothing(source: Store, tmp_path: Path, damage: Any,
                                                              message: str):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "abc.png").write_bytes(b"\x89PNG\r\n\x1a\nxyz")
    backups.backup(source, tmp_path / "b", uploads)
    damage(tmp_path / "b")
    target = new_store("tinydb", tmp_path / "target" / "civicflow.json")
    target_uploads = tmp_path / "target-uploads"
    with pytest.raises(backups.BackupError) as refused:
        backups.restore(target, tmp_path / "b", target_uploads, force=True)
    assert message in str(refused.value)
    assert target.tables() == [] and not target_uploads.exists()
    target.close()


def test_backup_never_overwrites_and_leaves_nothing_half_written(source: Store, tmp_path: Path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").write_text("mine")
    with pytest.raises(backups.BackupError, match="exists already"):
        backups.backup(source, tmp_path / "b")
    (tmp_path / "file").write_text("")
    with pytest.raises(backups.BackupError, match="cannot make the backup"):
        backups.backup(source, tmp_path / "file" / "b")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_backup_taken_while_another_process_writes_is_consistent(tmp_path: Path):
    path = tmp_path / "live" / "civicflow.json"
    path.parent.mkdir()
    worker = subprocess.Popen([sys.executable, str(Path(__file__).parent / "backup_worker.py"), str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        store = new_store("tinydb", path)
        manifests = [backups.backup(store, tmp_path / f"b{i}") for i in range(3)]
        last = store.count("items")
        store.close()
    finally:
        worker.kill()
        worker.wait()
    seen = []
    for i, manifest in enumerate(manifests):
        # check_backup ran before each backup got its name (counts, chains); check again, and the invariants
        _m, dump = backups.check_backup(tmp_path / f"b{i}")
        items = manifest.counts["items"]
        assert manifest.counts["ledger"] == items == manifest.chains[ledger.LEDGER]["seq"]
        assert sum(doc["balance"] for doc in dump[ledger.ACCOUNTS]) == items
        seen.append(items)
    assert seen == sorted(seen) and seen[-1] <= last and len(set(seen)) > 1  # the worker kept writing


def test_a_backup_of_a_memory_store_taken_while_a_thread_writes_is_consistent(tmp_path: Path):
    store = new_store("memory", tmp_path / "unused")
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            with store.transaction() as tx:
                entry = ledger.post(tx, "owner", 1, reason={}, case_id=None, workflow=None, transition=None,
                                    by="thread", now=NOW)
                tx.insert("items", {"seq": entry["seq"]})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while store.count("items") < 20:
            time.sleep(0.01)
        manifests = [backups.backup(store, tmp_path / f"b{i}") for i in range(3)]
    finally:
        stop.set()
        writer.join()
    for manifest in manifests:
        assert manifest.counts["items"] == manifest.counts["ledger"] == manifest.chains[ledger.LEDGER]["seq"]
    assert manifests[0].counts["items"] < manifests[-1].counts["items"] <= store.count("items")


def test_restore_refuses_a_store_another_process_has_open(source: Store, tmp_path: Path):
    backups.backup(source, tmp_path / "b")
    path = tmp_path / "busy" / "civicflow.json"
    TinyDBStore(path).close()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                               "from engine.store import TinyDBStore; s = TinyDBStore(sys.argv[2]); "
                               "print('open', flush=True); time.sleep(60)", str(ROOT), str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        target = TinyDBStore(path)
        with pytest.raises(backups.BackupError) as refused:
            backups.restore(target, tmp_path / "b")
        assert f"open in another process (pid {holder.pid})" in str(refused.value)
        assert target.tables() == []
    finally:
        holder.kill()
        holder.wait()
    backups.restore(target, tmp_path / "b")  # once it is gone, the restore goes through
    assert target.count("cases") == 5
    target.close()


# -- db copy -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "tinydb"])
def test_copy_keeps_every_table_and_id_and_the_counter_continues(source: Store, tmp_path: Path, kind: str):
    with source.transaction() as tx:  # ids with a gap: ids are kept, not renumbered
        tx.replace("cases", 40, {"title": "imported with id 40"})
    target = new_store(kind, tmp_path / "copy" / "civicflow.json")
    copied = transfer.copy_store(source, target)
    assert copied["cases"] == 6 and everything(target) == everything(source)
    with target.transaction() as tx:
        assert tx.insert("cases", {"title": "next"}) == 41
        assert tx.insert("ledger", {"x": 1}) == 5
    if kind == "tinydb":  # and after opening the copy again, from its files
        target.close()
        target = TinyDBStore(tmp_path / "copy" / "civicflow.json")
        with target.transaction() as tx:
            assert tx.insert("cases", {"title": "after reopening"}) == 42
    target.close()


def test_copy_round_trip_memory_tinydb_tinydb_is_equal(source: Store, tmp_path: Path):
    first = new_store("tinydb", tmp_path / "one.json")
    second = new_store("tinydb", tmp_path / "two.json")
    transfer.copy_store(source, first)
    transfer.copy_store(first, second)
    assert everything(second) == everything(source)
    first.close()
    second.close()


def test_copy_refuses_a_non_empty_target_and_a_broken_source(source: Store, tmp_path: Path):
    target = new_store("tinydb", tmp_path / "t.json")
    with target.transaction() as tx:
        tx.insert("users", {"username": "someone"})
        tx.insert("users", {"username": "else"})
    with pytest.raises(transfer.TransferError, match=r"is not empty \(2 users\)"):
        transfer.copy_store(source, target)
    assert [u["username"] for u in target.search("users")] == ["someone", "else"]
    transfer.copy_store(source, target, force=True)
    assert everything(target) == everything(source)
    with source.transaction() as tx:
        entry = tx.get("ledger", 3)
        tx.replace("ledger", 3, {**entry, "amount": 99})
    empty = new_store("memory", tmp_path / "unused")
    with pytest.raises(transfer.TransferError) as refused:
        transfer.copy_store(source, empty)
    assert "the source does not verify" in str(refused.value) and "ledger entry 3" in str(refused.value)
    assert empty.tables() == []
    target.close()


# -- the commands ----------------------------------------------------------------------------


def civicflow(*args: str, instance: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CIVICFLOW_HOME": str(ROOT), "CIVICFLOW_INSTANCE": str(instance)}
    return subprocess.run([sys.executable, "-m", "engine.web.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)


def test_the_commands_back_up_restore_and_copy_an_instance(tmp_path: Path):
    live, other = tmp_path / "live", tmp_path / "other"
    assert civicflow("demo", instance=live).returncode == 0
    (live / "uploads").mkdir()
    (live / "uploads" / "k.pdf").write_bytes(b"%PDF-1.4 test")
    made = civicflow("backup", str(tmp_path / "b"), instance=live)
    assert made.returncode == 0, made.stderr
    assert "backup written to" in made.stdout and "1 uploaded files" in made.stdout
    restored = civicflow("restore", str(tmp_path / "b"), instance=other)
    assert restored.returncode == 0, restored.stderr
    assert (other / "uploads" / "k.pdf").read_bytes() == b"%PDF-1.4 test"
    again = civicflow("restore", str(tmp_path / "b"), instance=other)
    assert again.returncode == 1 and "is not empty" in again.stderr and "--force" in again.stderr
    assert civicflow("restore", "--force", str(tmp_path / "b"), instance=other).returncode == 0
    assert civicflow("verify", instance=other).returncode == 0
    copy = civicflow("db", "copy", "--from", str(other / "civicflow.json"), "--to", str(tmp_path / "c.json"),
                     instance=other)
    assert copy.returncode == 0 and "counts and both ledger chains verified" in copy.stdout, copy.stderr
    refused = civicflow("db", "copy", "--from", str(other / "civicflow.json"), "--to", str(tmp_path / "c.json"),
                        instance=other)
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    forced = civicflow("db", "copy", "--from", str(other / "civicflow.json"), "--to", str(tmp_path / "c.json"),
                       "--into-nonempty", instance=other)
    assert forced.returncode == 0, forced.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("restore", "{tmp}/missing"), "missing does not exist"),
    (("restore", "{tmp}"), "is not a Civicflow backup"),
    (("restore", "{tmp}/file"), "is not a Civicflow backup"),
    (("restore", "{tmp}/file.tar.gz"), "is an archive: unpack it"),
    (("backup", "{tmp}/file/b"), "cannot make the backup"),
    (("backup", "/proc/civicflow-backup"), "cannot make the backup"),
    (("backup", "{tmp}"), "exists already"),
    (("backup", "{tmp}/b.tar.gz"), "a backup is a directory, not an archive"),
    (("db", "copy", "--from", "{tmp}/missing.json", "--to", "{tmp}/t.json"), "the source"),
    (("db", "copy", "--from", "{tmp}/file", "--to", "{tmp}/t.json"), "cannot open the source"),
    (("db", "copy", "--from", "{tmp}/t.json", "--to", "{tmp}/t.json"), "name the same store"),
    (("db", "copy", "--from", "{tmp}/t.json"), "Missing option '--to'"),
])
def test_bad_input_gets_one_clear_message_and_no_traceback(tmp_path: Path, args: tuple[str, ...], message: str):
    (tmp_path / "file").write_text("not a store, not a backup")
    (tmp_path / "file.tar.gz").write_bytes(b"\x1f\x8b not really")
    result = civicflow(*(a.format(tmp=tmp_path) for a in args), instance=tmp_path / "instance")
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr + result.stdout


def test_a_corrupt_instance_store_gets_a_message_saying_how_to_restore(tmp_path: Path):
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "civicflow.json").write_text("garbage")
    result = civicflow("restore", str(tmp_path / "b"), instance=tmp_path / "instance")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot open the store: it is not valid JSON" in result.stderr
    assert "move the store's files aside" in result.stderr


def test_an_index_declared_on_the_target_sees_the_restored_documents(source: Store, tmp_path: Path):
    """A restore writes through transactions, so the app's indexes (declared at start) stay right."""
    target = new_store("memory", tmp_path / "unused")
    target.add_index(Index("by_title", "cases", keys=lambda d: [("title", d.get("title"))]))
    backups.backup(source, tmp_path / "b")
    backups.restore(target, tmp_path / "b")
    assert target.first("by_title", ("title", "case 3"))["id"] == 4
    target.close()


def test_civicflow_backup_while_the_server_serves_and_another_process_writes(tmp_path: Path):
    from .test_server import civicflow as run_civicflow, serving

    instance = tmp_path / "instance"
    assert run_civicflow(instance, "demo").returncode == 0
    with serving(instance) as server:
        worker = subprocess.Popen([sys.executable, str(Path(__file__).parent / "backup_worker.py"),
                                   str(instance / "civicflow.json")], stdout=subprocess.PIPE, text=True)
        try:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
            results = [run_civicflow(instance, "backup", str(tmp_path / f"b{i}")) for i in range(2)]
            assert server.health()["status"] == "ok"
        finally:
            worker.kill()
            worker.wait()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    demo_entries = None
    for i in range(2):
        manifest, _dump = backups.check_backup(tmp_path / f"b{i}")
        assert manifest.counts["items"] >= 1 and manifest.counts["cases"] >= 100 and manifest.counts["ledger"] == manifest.chains["ledger"]["seq"]
        # every worker transaction adds one item and one ledger entry: the demo's own entries stay the difference
        extra = manifest.counts["ledger"] - manifest.counts.get("items", 0)
        assert demo_entries in (None, extra)
        demo_entries = extra
