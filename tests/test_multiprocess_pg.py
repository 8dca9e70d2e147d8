"""Several server processes on one PostgreSQL database, as on several hosts: real subprocesses on real ports,
spoken to over HTTP; every server is killed in a ``finally`` whatever the test does.

- timers: each process runs the background ticker; the leader is elected with a PostgreSQL advisory lock
  (not the instance's ``flock``, which only one host would see), so each instance directory here is its own,
  like two hosts; a due timer fires once, and when the leader is killed another process takes over.
- gunicorn: several worker processes of one server on one database, raced over HTTP by client threads
  (urllib, a cookie jar each, the CSRF token read from the page): one claim of a wish wins, redemptions
  never overdraw a balance, and a session made on one worker works on the others. Which worker served a
  request is in gunicorn's access log (``%(p)s``), so the app needs nothing for it.
"""
from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psycopg
import pytest

from engine.cases import CASES
from engine.clock import SHANGHAI, FrozenClock
from engine.web import create_app
from tests.conftest import GOVERNANCE_USERS, add_users, governance_dir
from tests import conftest
from tests.pg import free_port
from tests.test_governance import U
from tests.test_process_points import ACTIVITY
from tests.test_process_points import USERS as POINTS_USERS
from tests.test_process_wishes import USERS as WISH_USERS
from tests.test_process_wishes import WISH
from tests.test_process_wishes import act as act_in_process
from tests.test_server import ROOT, START_TIMEOUT, Browser, civicflow_env, serving, stop


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


# -- gunicorn workers on one database ------------------------------------------------------------------

WORKERS = 3
USERS = WISH_USERS + [u for u in POINTS_USERS if u[0] not in {w[0] for w in WISH_USERS}]


@dataclass
class Gunicorn:
    process: subprocess.Popen
    url: str
    access: Path
    errors: Path

    def pids(self) -> list[int]:
        """Which worker served each request so far, in order (gunicorn's access log, one pid per line)."""
        return [int(line.split()[0].strip("<>")) for line in self.access.read_text().splitlines() if line.strip()]

    def served_since(self, before: int, at_least: int, timeout: float = 10) -> list[int]:
        """The pids of the requests logged after the first ``before``, once ``at_least`` are there (a worker
        writes its line just after sending the response, so the last ones may still be on their way)."""
        deadline = time.monotonic() + timeout
        while len(self.pids()) - before < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.pids()[before:]

    def workers(self) -> set[int]:
        """The live worker processes: the master's children."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


@contextmanager
def gunicorn(tmp_path: Path, url: str, secret: bool = True) -> Iterator[Gunicorn]:
    """``gunicorn -w 3 'engine.web:create_app()'`` on ``url``, every worker ready when yielded; killed after.
    ``secret``: the key is set in the environment (else the workers make the instance's at once)."""
    port = free_port()
    access, errors = tmp_path / "access.log", tmp_path / "gunicorn.err"
    keys = {"CIVICFLOW_SECRET_KEY": "one key for every worker, 32+ chars"} if secret else {}
    env = civicflow_env(tmp_path / "instance", CIVICFLOW_DATABASE_URL=url, **keys)
    with open(errors, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "--timeout", "60",
             "--access-logfile", str(access), "--access-logformat", "%(p)s %(m)s %(U)s %(s)s",
             "engine.web:create_app()"],
            stdout=stderr, stderr=stderr, env=env, cwd=ROOT)
    server = Gunicorn(process, f"http://127.0.0.1:{port}", access, errors)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while len(server.workers()) < WORKERS or not access.exists() or len(set(server.pids())) < WORKERS:
            # Requests at once keep every worker busy, so each one answers some: all have loaded the app.
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not start {WORKERS} workers:\n{errors.read_text()}")
            concurrently([lambda: _get_quietly(server.url + "/healthz")] * (2 * WORKERS))
        yield server
    finally:
        stop(process)
        assert "Traceback" not in errors.read_text(), errors.read_text()


def _get_quietly(url: str) -> None:
    try:
        Browser(url).request("")
    except (urllib.error.URLError, ConnectionError):
        time.sleep(0.1)


def concurrently(calls: list[Callable[[], Any]], timeout: float = 60) -> list[Any]:
    """Run the calls in threads released at one moment; their results in order (an exception re-raised)."""
    barrier = threading.Barrier(len(calls), timeout=timeout)
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a client thread hung"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def logged_in(url: str, username: str) -> Browser:
    browser = Browser(url, follow_redirects=False)
    status, headers, _ = browser.login(username)
    assert status == 302, (status, headers)
    return browser


def poster(browser: Browser, path: str, page: str, form: dict[str, str]) -> Callable[[], tuple[int, str]]:
    """A POST of ``form`` with the CSRF token and the case version read from ``page`` now (as a person's open
    page has them), to send later."""
    status, _, html = browser.request(page)
    assert status == 200, html[:2000]
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    version = re.search(r'name="version" value="(\d+)"', html)
    data = {"csrf_token": token, **({"version": version.group(1)} if version else {}), **form}

    def send() -> tuple[int, str]:
        code, _, body = browser.request(path, data, {"Connection": "close"})
        return code, body
    return send


def prepared(tmp_path: Path, url: str) -> Any:
    """An app in this process on the database (the shipped definitions, the users of the wish and points tests)."""
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": url, "UPLOADS": str(tmp_path / "up"),
                      "DEFINITIONS": str(ROOT)}, start_timers=False)
    add_users(app.extensions["civicflow"].store, USERS)
    return app


def refused(code: int, body: str) -> bool:
    """A clear refusal: a conflict or bad-request page saying why, never a server error."""
    return code in (400, 409) and "<html" in body.lower() and "Traceback" not in body


def test_gunicorn_workers_race_for_one_claim_and_one_wins(tmp_path: Path, pg_url: str):
    app = prepared(tmp_path, pg_url)
    try:
        grid, staff = conftest.Browser(app).login("grid"), conftest.Browser(app).login("staff")
        response = grid.post("/start/micro_wish", WISH)
        cid = int(re.search(r"/cases/(\d+)", response.headers["Location"]).group(1))
        assert act_in_process(staff, cid, "verify", verified_on="2026-11-27", verify_way="home").status_code == 302
        with gunicorn(tmp_path, pg_url) as server:
            claimers = [logged_in(server.url, name) for name in ("party", "party2", "partner") * 3]
            sends = [poster(b, f"/cases/{cid}/do/claim", f"/cases/{cid}", {}) for b in claimers]
            before = len(server.pids())
            results = concurrently(sends)
            served = set(server.served_since(before, len(claimers)))
        codes = sorted(code for code, _ in results)
        assert codes == [302] + [409] * (len(claimers) - 1), codes
        assert all(refused(code, body) for code, body in results if code != 302)
        assert len(served) >= 2, served  # the race really was between worker processes
        doc = app.extensions["civicflow"].store.get(CASES, cid)
        assert doc["state"] == "claimed" and len(doc["assignees"]) == 1
        assert [h["action"] for h in doc["history"]].count("claim") == 1
    finally:
        app.extensions["civicflow"].store.close()


def test_gunicorn_workers_race_redemptions_and_never_overdraw(tmp_path: Path, pg_url: str):
    app = prepared(tmp_path, pg_url)
    engine = app.extensions["civicflow"]
    try:
        staff, secretary = conftest.Browser(app).login("staff"), conftest.Browser(app).login("secretary")
        activity = staff.post("/start/volunteer_activity", {**ACTIVITY, "hours": "5"})  # 50 points
        aid = int(re.search(r"/cases/(\d+)", activity.headers["Location"]).group(1))
        assert act_in_process(staff, aid, "add_participants", assignees=["volunteer"], headcount="1").status_code == 302
        assert act_in_process(secretary, aid, "confirm").status_code == 302
        assert engine.balance("volunteer") == 50
        volunteer = conftest.Browser(app).login("volunteer")
        towels = []
        for _ in range(6):  # 20 points each: at most two of them fit in 50
            response = volunteer.post("/start/points_redemption", {"reward": "towel", "quantity": "1",
                                                                   "supermarket": "renjia"})
            towels.append(int(re.search(r"/cases/(\d+)", response.headers["Location"]).group(1)))
        with gunicorn(tmp_path, pg_url) as server:
            clients = [logged_in(server.url, "volunteer") for _ in towels]
            sends = [poster(b, f"/cases/{cid}/do/redeem", f"/cases/{cid}", {}) for b, cid in zip(clients, towels)]
            results = concurrently(sends)
        won = [cid for cid, (code, _) in zip(towels, results) if code == 302]
        assert len(won) == 2, [code for code, _ in results]
        assert all(refused(code, body) and "积分不足" in body for code, body in results if code != 302)
        assert engine.balance("volunteer") == 10
        entries = engine.ledger_of("volunteer")
        assert sorted(e["amount"] for e in entries) == [-20, -20, 50]
        assert all(e["balance"] >= 0 for e in entries)
        assert sorted(e["case"] for e in entries if e["amount"] < 0) == sorted(won)
    finally:
        engine.store.close()


def test_gunicorn_workers_race_registrations_of_one_id_number_and_one_wins(tmp_path: Path, pg_url: str):
    """volunteer_registration's unique rule (one registration per ID number) across worker processes."""
    app = prepared(tmp_path, pg_url)
    engine = app.extensions["civicflow"]
    number = conftest.new_id_number()
    form = {"name": "王芳", "gender": "female", "phone": "13812345678", "id_number": number, "skills": "tutoring",
            "available_times": "weekend", "grid": "renjia-g1", "pledge": "1"}
    try:
        with gunicorn(tmp_path, pg_url) as server:
            people = [logged_in(server.url, name) for name in ("resident", "steward", "party", "party2") * 2]
            sends = [poster(b, "/start/volunteer_registration", "/start/volunteer_registration", form) for b in people]
            before = len(server.pids())
            results = concurrently(sends)
            served = set(server.served_since(before, len(people)))
        codes = sorted(code for code, _ in results)
        assert codes == [302] + [422] * (len(people) - 1), codes
        assert all("该身份证号码已提交过志愿者注册（#" in body for code, body in results if code == 422)
        assert len(served) >= 2, served  # the race really was between worker processes
        held = [d for d in engine.store.search(CASES) if d["data"].get("id_number") == number]
        assert len(held) == 1 and held[0]["state"] == "submitted"
    finally:
        engine.store.close()


@pytest.mark.parametrize("secret", [True, False], ids=["key-in-env", "instance-key"])
def test_a_session_made_on_one_worker_works_on_every_worker(tmp_path: Path, pg_url: str, secret: bool):
    app = prepared(tmp_path, pg_url)
    try:
        with gunicorn(tmp_path, pg_url, secret) as server:
            browser = logged_in(server.url, "grid")
            before = len(server.pids())
            # Four at a time, each on a new connection: a sync worker serves one at a time, so several serve.
            pages = concurrently([lambda: browser.request("/", headers={"Connection": "close"})
                                  for _ in range(4)] * 5)
            assert all(status == 200 and "赵敏" in html for status, _, html in pages)  # logged in everywhere
            results = concurrently([poster(browser, "/start/micro_wish", "/start/micro_wish",
                                           {**WISH, "wish_content": f"心愿 {i}"}) for i in range(3)])
            assert [code for code, _ in results] == [302, 302, 302]  # the CSRF token of one worker, on the others
            served = server.served_since(before, 20 + 3 * 2)
        # (>=: the login's line may be written after ``before`` was read)
        assert len(served) >= 20 + 3 * 2 and len(set(served)) >= 2, served
        titles = {doc["data"]["wish_content"] for doc in app.extensions["civicflow"].store.search(CASES)}
        assert titles == {"心愿 0", "心愿 1", "心愿 2"}
        instance = sorted(p.name for p in (tmp_path / "instance").glob("*"))
        assert instance == ([] if secret else ["secret_key"])  # one key, no worker's file left behind
    finally:
        app.extensions["civicflow"].store.close()
