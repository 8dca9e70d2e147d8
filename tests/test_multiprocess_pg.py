"""Several server processes on one PostgreSQL database, as on several hosts: real subprocesses on real ports,
spoken to over HTTP; every server is killed in a ``finally`` whatever the test does.

- timers: each process runs the background ticker; the leader is elected with a PostgreSQL advisory lock
  (not the instance's ``flock``, which only one host would see), so each instance directory here is its own,
  like two hosts; a due timer fires once, and when the leader is killed another process takes over.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.clock import SHANGHAI, FrozenClock
from engine.web import create_app
from tests.conftest import GOVERNANCE_USERS, add_users, governance_dir
from tests.test_server import serving
from tests.test_governance import U

import time


def _leader_sessions(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return sorted(row[0] for row in conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"))


def _wait(predicate: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_two_hosts_on_one_database_tick_once_and_hand_over(tmp_path: Path, pg_url: str):
    home = governance_dir(tmp_path)
    # A case started four days ago: its ``after: 3d`` timer is due for the servers' real clock.
    past = FrozenClock(dt.datetime.now(SHANGHAI) - dt.timedelta(days=4))
    app = create_app({"SECRET_KEY": "t", "STORE": pg_url, "DEFINITIONS": str(home), "CLOCK": past},
                     start_timers=False)
    engine = app.extensions["civicflow"]
    try:
        add_users(engine.store, GOVERNANCE_USERS)
        env = {"CIVICFLOW_HOME": str(home), "CIVICFLOW_DATABASE_URL": pg_url, "CIVICFLOW_TICK_SECONDS": "0.1"}
        (tmp_path / "host1").mkdir()
        (tmp_path / "host2").mkdir()
        with serving(tmp_path / "host1", **env) as one, serving(tmp_path / "host2", **env) as two:
            _wait(lambda: sorted([one.health()["timers"], two.health()["timers"]]) == ["leader", "standby"],
                  f"no single leader: {one.health()} {two.health()}")
            leader, standby = (one, two) if one.health()["timers"] == "leader" else (two, one)
            assert _leader_sessions(pg_url) == [f"civicflow timers leader pid {leader.process.pid}"]
            assert not any(p.name == "ticker.lock" for p in tmp_path.rglob("*"))  # no file lock on a database
            cases = [engine.start("approval", U["grid"], {"wish_title": f"楼道装灯 {i}", "grid": "renjia-g1"}).id
                     for i in range(5)]
            _wait(lambda: all(engine.get(c).state == "expired" for c in cases), "the due timers did not fire")
            time.sleep(0.5)  # several more intervals of both tickers
            for cid in cases:
                assert [h["by"] for h in engine.get(cid).history] == ["grid", "system"]

            leader.process.kill()  # no clean shutdown: the server ends the dead process's session and lock
            leader.process.wait(10)
            _wait(lambda: standby.health()["timers"] == "leader", f"no take-over:\n{standby.stderr()}")
            assert _leader_sessions(pg_url) == [f"civicflow timers leader pid {standby.process.pid}"]
            later = engine.start("approval", U["grid"], {"wish_title": "单元门修理", "grid": "renjia-g1"}).id
            _wait(lambda: engine.get(later).state == "expired", "the new leader did not run the timer")
            assert [h["by"] for h in engine.get(later).history] == ["grid", "system"]
            assert "Traceback" not in standby.stderr()
    finally:
        engine.store.close()


def test_a_leader_lock_is_one_holder_at_a_time_and_steps_down_when_its_session_is_lost(pg_url: str):
    from engine.store.postgres_store import PostgresStore

    with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        first, second, other = a.leader_lock("timers"), b.leader_lock("timers"), b.leader_lock("reports")
        assert first.try_acquire() and first.try_acquire() and first.held  # holding it is idempotent
        assert not second.try_acquire() and not second.held
        assert other.try_acquire()  # another name is another lock
        with psycopg.connect(pg_url, autocommit=True) as admin:  # the server ends the leader's session
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                          (f"civicflow timers leader pid {__import__('os').getpid()}",))
        _wait(lambda: second.try_acquire(), "the lock was not freed with its session")
        assert not first.try_acquire() and not first.held  # it noticed, and does not lead beside the new one
        second.release()
        assert first.try_acquire()
        first.release()
        other.release()
