"""The durable stores under real processes: SIGKILL mid-stream, and several writers at once.

Real files, real fsync, a real PostgreSQL, real ``kill -9``; the workers are tests/store_worker.py.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import PostgresStore, Store, TinyDBStore

WORKER = str(Path(__file__).with_name("store_worker.py"))

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX processes")


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, WORKER, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_line(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.endswith(b"\n"):
        proc.kill()
        raise AssertionError(f"worker stopped: {proc.stderr.read().decode() if proc.stderr else ''}")
    return line.decode().strip()


# (acknowledgements to wait for, extra delay before the kill) for each round
KILL_MOMENTS = [(0, 0.0), (1, 0.0), (5, 0.002), (40, 0.0), (3, 0.01), (120, 0.001), (15, 0.0),
                (2, 0.0005), (60, 0.003), (8, 0.0), (25, 0.0015), (1, 0.02)]


def reopen(path: Path | str, compact: str = "default") -> Store:
    if isinstance(path, str):
        return PostgresStore(path)
    return TinyDBStore(path, compact_bytes=None if compact == "default" else int(compact))


@pytest.mark.parametrize("compact", ["default", "2000", "1", "postgres"],
                         ids=["rare-compaction", "frequent-compaction", "compaction-every-commit", "postgres"])
def test_sigkill_never_loses_an_acknowledged_write(tmp_path, compact, request):
    """Kill a writer at assorted moments; after each kill the store opens and holds every ack.

    With compaction at every commit most of a transaction's time is spent compacting,
    so most of those kills land in the middle of a compaction. On PostgreSQL a kill lands
    mid-transaction (the server rolls it back) or between them.
    """
    path: Path | str = request.getfixturevalue("pg_url") if compact == "postgres" else tmp_path / "db.json"
    acknowledged: list[str] = []
    for wait_for, delay in KILL_MOMENTS:
        proc = start("acks", str(path), compact)
        for _ in range(wait_for):
            acknowledged.append(read_line(proc))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        # Lines printed before the kill but not read yet were acknowledged too.
        acknowledged += [line for line in out.decode().split("\n")[:-1]]

        with reopen(path, compact) as s:
            acks = {d["token"] for d in s.search("acks")}
            pairs = {d["token"] for d in s.search("pairs")}
            assert set(acknowledged) <= acks
            assert acks == pairs  # every transaction landed whole or not at all
            ids = [d["id"] for d in s.search("acks")]
            assert ids == sorted(set(ids))
        if isinstance(path, Path) and path.exists():  # the snapshot is only ever replaced whole
            json.loads(path.read_text())

    assert len(acknowledged) >= sum(n for n, _ in KILL_MOMENTS)


@pytest.mark.parametrize("kind", ["tinydb", "postgres"])
def test_concurrent_processes_serialize_their_transactions(tmp_path, kind, request):
    """Two writers increment one counter and insert items (while compacting, on TinyDB); a reader watches."""
    path: Path | str = request.getfixturevalue("pg_url") if kind == "postgres" else tmp_path / "db.json"
    writers, per_writer = 2, 200
    total = writers * per_writer
    procs = [start("counter", str(path), "3000", f"w{n}", str(per_writer)) for n in range(writers)]
    procs.append(start("reader", str(path), str(total)))
    for proc in procs:
        assert read_line(proc) == "ready"
    for proc in procs:  # go, all at once
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err.decode()

    ids_by_writer = [[int(x) for x in out.split()] for out, _ in outputs[:writers]]
    all_ids = [i for ids in ids_by_writer for i in ids]
    assert sorted(all_ids) == list(range(1, total + 1))  # unique ids, none skipped
    assert all(ids == sorted(ids) for ids in ids_by_writer)
    assert min(ids_by_writer[0]) < max(ids_by_writer[1]) and min(ids_by_writer[1]) < max(ids_by_writer[0]), \
        "the writers did not overlap, so this run proved nothing"
    assert outputs[-1][0].decode().startswith("ok"), outputs[-1][0].decode()
    with reopen(path) as s:
        assert s.get("counters", 1)["value"] == total
        items = s.search("items")
        assert sorted((d["worker"], d["i"]) for d in items) == sorted(
            (f"w{w}", i) for w in range(writers) for i in range(per_writer))
        assert [d["id"] for d in items] == list(range(1, total + 1))
    if isinstance(path, Path):
        seq = json.loads(path.read_text())["_meta"]["1"]["seq"]
        assert seq > 100  # compactions happened during the run
