"""The production server as an operator runs it: `civicflow serve` in its own process, spoken to over HTTP.

Every server here is a real subprocess on a real port (port 0: the server picks a free one and
prints it), driven with urllib and a cookie jar the way a browser would; each is killed in a
``finally`` whatever the test does.
"""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from engine.web import create_app
from engine.web.ticker import LeaderLock, Ticker

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "demo1234"  # demo/users.yaml
START_TIMEOUT = 60.0


def civicflow_env(instance: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICFLOW_")}
    env.update({"CIVICFLOW_HOME": str(ROOT), "CIVICFLOW_INSTANCE": str(instance), "PYTHONUNBUFFERED": "1", **extra})
    return env


def civicflow(instance: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.web.cli", *args], capture_output=True, text=True,
                          env=civicflow_env(instance, **env), cwd=ROOT, timeout=120)


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    out: Path
    err: Path

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
            assert response.status == 200
            return json.load(response)

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.stderr()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the server's log:\n{self.stderr()}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def serving(instance: Path, *args: str, **env: str) -> Iterator[Server]:
    """``civicflow serve --port 0`` on ``instance``, ready (``/healthz`` answered) when yielded."""
    n = len(list(instance.glob("serve-*.out")))
    out, err = instance / f"serve-{n}.out", instance / f"serve-{n}.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "engine.web.cli", "serve", "--port", "0", *args],
                                   stdout=stdout, stderr=stderr, env=civicflow_env(instance, **env), cwd=ROOT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        url = None
        while url is None:
            found = re.search(r"serving on (http://\S+)", out.read_text())
            if found:
                url = found.group(1)
            elif process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start (exit {process.poll()}):\n{err.read_text()}")
            else:
                time.sleep(0.05)
        server = Server(process, url, out, err)
        while True:
            try:
                server.health()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"/healthz never answered:\n{err.read_text()}") from None
                time.sleep(0.05)
        yield server
    finally:
        stop(process)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


class Browser:
    """urllib with a cookie jar: reads the CSRF token from the page it got, like a person's browser."""

    def __init__(self, base: str, follow_redirects: bool = True):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.cookies)]
        if not follow_redirects:
            handlers.append(NoRedirect())
        self.opener = urllib.request.build_opener(*handlers)

    def request(self, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read().decode()

    def csrf_token(self, path: str = "/login") -> str:
        status, _, page = self.request(path)
        assert status == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, page
        return token.group(1)

    def login(self, username: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        token = self.csrf_token()
        return self.request("/login", {"csrf_token": token, "username": username, "password": PASSWORD,
                                       "next": ""}, headers)


@pytest.fixture(scope="module")
def demo_instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    instance = tmp_path_factory.mktemp("instance")
    result = civicflow(instance, "demo")
    assert result.returncode == 0, result.stderr
    assert "demo cases" in result.stdout
    return instance


@pytest.fixture(scope="module")
def server(demo_instance: Path) -> Iterator[Server]:
    with serving(demo_instance) as running:
        yield running


# -- serving -------------------------------------------------------------------------------------


def test_serve_prints_where_it_listens_and_healthz_answers(server: Server):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
    first_line = server.out.read_text().splitlines()[0]
    assert "waitress" in first_line and "8 threads" in first_line
    health = server.health()
    assert health["status"] == "ok" and health["store"] == "ok"
    assert health["workflows"] >= 10  # the shipped definitions were loaded
    assert health["timers"] == "leader"  # the only server on this instance runs the timers


def test_a_person_logs_in_and_sees_the_inbox(server: Server):
    browser = Browser(server.url)
    status, _, page = browser.request("/login")
    assert status == 200 and 'name="csrf_token"' in page
    status, _, inbox = browser.login("staff")
    assert status == 200
    assert "陈静" in inbox  # the display name of demo user `staff`, shown only when logged in
    assert any(cookie.name == "session" for cookie in browser.cookies)
    # A POST without the token is refused, also under the production server.
    status, _, _ = Browser(server.url).request("/login", {"username": "staff", "password": PASSWORD})
    assert status == 400


def test_every_request_is_logged_without_its_query_string(server: Server):
    Browser(server.url).request("/login?next=/cases/1&phone=13800000000")
    log = server.wait_for_log("GET /login 200")
    line = next(line for line in log.splitlines() if "GET /login 200" in line)
    assert "civicflow.requests" in line
    assert re.search(r"GET /login 200 \d+\.\d ms 127\.0\.0\.1$", line), line
    assert "13800000000" not in log and "phone" not in log


def test_several_requests_at_once_are_served(server: Server):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: Browser(server.url).request("/login")[0], range(16)))
    assert statuses == [200] * 16


# -- settings from the environment ----------------------------------------------------------------


def test_secure_cookies_and_a_secret_key_from_the_environment(demo_instance: Path):
    key = "k" * 40
    with serving(demo_instance, CIVICFLOW_SECURE_COOKIES="1", CIVICFLOW_SECRET_KEY=key) as running:
        status, headers, _ = Browser(running.url).request("/login")
        assert status == 200
        cookie = headers["Set-Cookie"]
        assert cookie.startswith("session=") and "Secure" in cookie and "HttpOnly" in cookie
    # The session is signed with the key from the environment, not the instance's secret_key file.
    from flask.sessions import SecureCookieSessionInterface
    app = create_app({"TESTING": True, "SECRET_KEY": key, "STORE": "memory", "DEFINITIONS": str(ROOT)})
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert "csrf_token" in SecureCookieSessionInterface().get_signing_serializer(app).loads(value)
    with serving(demo_instance) as running:
        assert "Secure" not in Browser(running.url).request("/login")[1]["Set-Cookie"]


def _read_secret_key(instance: str, barrier: Any, keys: Any) -> None:
    from engine.web import _secret_key
    barrier.wait()  # every process asks for the key at the same moment, as workers of one server do
    keys.put(_secret_key(Path(instance)))


def test_processes_starting_at_once_on_a_new_instance_share_one_whole_key(tmp_path: Path):
    """A key created, then written, could be read empty by a second worker ("no secret key was set": 500)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for attempt in range(8):
        instance = tmp_path / f"instance{attempt}"
        barrier, keys = ctx.Barrier(6), ctx.Queue()
        workers = [ctx.Process(target=_read_secret_key, args=(str(instance), barrier, keys)) for _ in range(6)]
        for worker in workers:
            worker.start()
        got = [keys.get(timeout=30) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
        assert [w.exitcode for w in workers] == [0] * 6
        assert len(set(got)) == 1 and len(got[0]) == 64, got
        assert (instance / "secret_key").read_text().strip() == got[0]
        assert sorted(p.name for p in instance.iterdir()) == ["secret_key"]  # no process's own file left behind


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "civic.example"}


def test_behind_a_trusted_proxy_the_forwarded_headers_count(demo_instance: Path):
    with serving(demo_instance, CIVICFLOW_TRUSTED_PROXIES="1") as running:
        # Over HTTPS, Flask-WTF also demands a same-site Referer: proof that the request is seen as https.
        status, _, _ = Browser(running.url, follow_redirects=False).login("staff", FORWARDED)
        assert status == 400
        # ... and that the forwarded host is the one compared.
        wrong = {**FORWARDED, "Referer": running.url + "/login"}
        assert Browser(running.url, follow_redirects=False).login("staff", wrong)[0] == 400
        right = {**FORWARDED, "Referer": "https://civic.example/login"}
        status, headers, _ = Browser(running.url, follow_redirects=False).login("staff", right)
        assert status == 302, headers
        log = running.wait_for_log("POST /login 302")
        assert re.search(r"POST /login 302 \S+ ms 203\.0\.113\.9$", log, re.M), log


def test_without_trusted_proxies_forwarded_headers_are_ignored(demo_instance: Path):
    with serving(demo_instance) as running:
        status, _, _ = Browser(running.url, follow_redirects=False).login("staff", FORWARDED)
        assert status == 302  # plain http: no Referer check, the forged proto did not count
        log = running.wait_for_log("POST /login 302")
        assert re.search(r"POST /login 302 \S+ ms 127\.0\.0\.1$", log, re.M), log
        assert "203.0.113.9" not in log


@pytest.mark.parametrize("env, message", [
    ({"CIVICFLOW_TRUSTED_PROXIES": "x"}, "CIVICFLOW_TRUSTED_PROXIES must be a whole number >= 0, not 'x'"),
    ({"CIVICFLOW_TRUSTED_PROXIES": "-1"}, "CIVICFLOW_TRUSTED_PROXIES must be a whole number >= 0, not '-1'"),
    ({"CIVICFLOW_SECURE_COOKIES": "maybe"}, "CIVICFLOW_SECURE_COOKIES must be 1 or 0, not 'maybe'"),
    ({"CIVICFLOW_TICK_SECONDS": "soon"}, "CIVICFLOW_TICK_SECONDS must be a number of seconds >= 0"),
    ({"CIVICFLOW_SECRET_KEY": "short"}, "CIVICFLOW_SECRET_KEY must be at least 16 characters"),
    ({"CIVICFLOW_THREADS": "0"}, "CIVICFLOW_THREADS must be a whole number >= 1, not '0'"),
    ({"CIVICFLOW_LOG_LEVEL": "LOUD"}, "CIVICFLOW_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
])
def test_a_bad_setting_stops_the_start_with_one_clear_line(tmp_path: Path, env: dict[str, str], message: str):
    result = subprocess.run([sys.executable, "-m", "engine.web.cli", "serve", "--port", "0"],
                            capture_output=True, text=True, env=civicflow_env(tmp_path, **env), cwd=ROOT,
                            timeout=60)
    assert result.returncode == 1
    assert f"Civicflow cannot start: {message}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "serving on" not in result.stdout


def test_threads_come_from_the_option_or_the_environment(demo_instance: Path):
    with serving(demo_instance, CIVICFLOW_THREADS="3") as running:
        assert "3 threads" in running.out.read_text()
    with serving(demo_instance, "--threads", "2", CIVICFLOW_THREADS="3") as running:
        assert "2 threads" in running.out.read_text()


# -- /healthz when the store fails ------------------------------------------------------------------


def test_healthz_is_503_with_a_reason_when_the_store_does_not_answer(tmp_path: Path):
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": str(tmp_path / "cf.json"), "DEFINITIONS": str(ROOT)})
    client = app.test_client()
    assert client.get("/healthz").get_json()["status"] == "ok"
    app.extensions["civicflow"].store.close()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable" and body["reason"] == "store: the store is closed"
    assert body["timers"] == "off"  # testing apps never tick


# -- timers run once per instance ---------------------------------------------------------------------


def test_one_lock_one_leader_even_inside_one_process(tmp_path: Path):
    first, second = LeaderLock(tmp_path / "ticker.lock"), LeaderLock(tmp_path / "ticker.lock")
    assert first.try_acquire() and first.try_acquire()  # holding it is idempotent
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire() and not first.try_acquire()
    second.release()


def test_a_replaced_lock_file_is_not_trusted(tmp_path: Path):
    path = tmp_path / "ticker.lock"
    first, second = LeaderLock(path), LeaderLock(path)
    assert first.try_acquire()
    path.unlink()  # someone cleaned up the instance directory
    assert second.try_acquire()  # a new file: another process could lock it ...
    assert not first.try_acquire()  # ... so the old holder steps down instead of ticking too
    second.release()


def test_two_tickers_on_one_store_only_one_leads(tmp_path: Path):
    store = str(tmp_path / "cf.json")
    app = create_app({"SECRET_KEY": "t", "STORE": store, "DEFINITIONS": str(ROOT), "TICK_SECONDS": 0.05},
                     start_timers=False)
    lock = app.config["TICKER_LOCK"]
    assert lock == store + ".ticker.lock"
    tickers = [Ticker(app, 0.05, LeaderLock(lock)), Ticker(app, 0.05, LeaderLock(lock))]
    try:
        for ticker in tickers:
            ticker.thread.start()
        deadline = time.monotonic() + 10
        while sorted(t.role for t in tickers) != ["leader", "standby"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(t.role for t in tickers) == ["leader", "standby"]
        time.sleep(0.3)  # several intervals: the standby keeps trying and keeps failing
        assert sorted(t.role for t in tickers) == ["leader", "standby"]
        leader = next(t for t in tickers if t.role == "leader")
        other = next(t for t in tickers if t is not leader)
        leader.stop()
        deadline = time.monotonic() + 10
        while other.role != "leader" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert other.role == "leader" and leader.role == "stopped"
    finally:
        for ticker in tickers:
            ticker.stop()
        app.extensions["civicflow"].store.close()


def test_two_server_processes_on_one_instance_tick_once_and_hand_over(tmp_path: Path):
    fast = {"CIVICFLOW_TICK_SECONDS": "0.2"}
    with serving(tmp_path, **fast) as one, serving(tmp_path, **fast) as two:
        deadline = time.monotonic() + 10
        while sorted([one.health()["timers"], two.health()["timers"]]) != ["leader", "standby"]:
            assert time.monotonic() < deadline, (one.health(), two.health())
            time.sleep(0.1)
        leader, standby = (one, two) if one.health()["timers"] == "leader" else (two, one)
        assert (tmp_path / "ticker.lock").read_text().strip() == str(leader.process.pid)
        leader.process.kill()  # no clean shutdown: the kernel drops the dead process's lock
        leader.process.wait(10)
        deadline = time.monotonic() + 10
        while standby.health()["timers"] != "leader":
            assert time.monotonic() < deadline, standby.stderr()
            time.sleep(0.1)
        assert (tmp_path / "ticker.lock").read_text().strip() == str(standby.process.pid)


def test_one_shot_commands_start_no_background_timers(tmp_path: Path):
    added = civicflow(tmp_path, "user", "add", "ops", "--role", "admin", "--unit", "huizhou", "--password", "secret-pass1")
    assert added.returncode == 0, added.stderr
    for command in (("tick",), ("verify",), ("user", "list")):
        result = civicflow(tmp_path, *command)
        assert result.returncode == 0, result.stderr
    # A ticker takes its lock as soon as it starts: none of these commands made one.
    assert not (tmp_path / "ticker.lock").exists()
    with serving(tmp_path) as running:
        assert running.health()["timers"] == "leader"
        assert (tmp_path / "ticker.lock").exists()
    app = create_app({"SECRET_KEY": "t", "STORE": "memory", "DEFINITIONS": str(ROOT)}, start_timers=False)
    assert "civicflow_ticker" not in app.extensions


def test_serve_with_a_broken_definition_lists_problems_and_exits(tmp_path: Path):
    import shutil

    home = tmp_path / "defs"
    for part in ("org", "forms", "workflows", "demo"):
        shutil.copytree(ROOT / part, home / part)
    wf = home / "workflows" / "volunteer_registration.yaml"
    wf.write_text(wf.read_text(encoding="utf-8").replace("to: active", "to: activ"), encoding="utf-8")
    env = civicflow_env(tmp_path / "instance")
    env["CIVICFLOW_HOME"] = str(home)
    result = subprocess.run([sys.executable, "-m", "engine.web.cli", "serve", "--port", "0"], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 1
    assert "unknown state 'activ'" in result.stderr and "Traceback" not in result.stderr
    assert "serving on" not in result.stdout
