"""Shared fixtures: a real app on a real store (memory, TinyDB file, PostgreSQL), demo users, and a browser-like client."""
from __future__ import annotations

import datetime as dt
import itertools
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from engine import idnumber
from engine.actions import ActionRegistry
from engine.builtin_actions import grant_role, notify_creator, open_points_account
from engine.cases import CASES
from engine.clock import FrozenClock
from engine.users import USERS, User, hash_password
from engine.web import create_app

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DEFS = Path(__file__).parent / "data" / "valid" / "runtime"
PASSWORD = "demo1234"
DEMO_USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident2", "马丽", ["resident"], "wenfeng-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("admin", "管理员", ["admin"], "huizhou"),
]
#: Longer fuzz runs than the suite's (tests/test_fuzz_forms.py: examples per form; tests/test_fuzz_definitions.py:
#: mutants): ``pytest --hypothesis-profile=fuzz-long tests/test_fuzz_forms.py tests/test_fuzz_definitions.py``.
settings.register_profile("fuzz-long", max_examples=200, deadline=None)
_HASH = hash_password(PASSWORD)  # hashing is slow on purpose; do it once
_PEOPLE = itertools.count()


def new_id_number() -> str:
    """A valid resident ID number no other call gives (volunteer registration allows one registration per
    number): a birth date from 1950-01-01 on, and its check digit."""
    born = dt.date(1950, 1, 1) + dt.timedelta(days=next(_PEOPLE))
    first17 = f"110105{born:%Y%m%d}001"
    return first17 + idnumber.check_digit(first17)


def add_users(store: Any, users: list[tuple[str, str, list[str], str]] = DEMO_USERS) -> None:
    with store.transaction() as tx:
        for username, name, roles, unit in users:
            tx.insert(USERS, User(username, name, tuple(roles), unit, _HASH).to_doc())


@pytest.fixture(scope="session")
def pg_server() -> Any:
    """A real PostgreSQL server for the whole session (started only if a test asks for it; see tests/pg.py)."""
    from tests.pg import PgServer

    server = PgServer()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: Any) -> Any:
    """The URL of an empty, migrated database of its own for one test."""
    url = pg_server.lease()
    yield url
    pg_server.give_back(url)


def store_location(kind: str, request: pytest.FixtureRequest, tmp_path: Path, name: str = "db.json") -> str:
    """What ``open_store`` / the ``STORE`` setting takes for a store of ``kind`` (memory, tinydb, postgres)."""
    if kind == "memory":
        return "memory"
    if kind == "postgres":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / name)


#: The stores every store test and the app fixture run on.
STORES = ["memory", "tinydb", "postgres"]
#: The stores the end-to-end tests of processes with ledgers, tallies, claims and redemptions run on (points,
#: awards, public decisions, wishes, volunteers, mechanics, dashboard, governance web); the other process
#: tests keep the TinyDB file only, so the whole suite stays within 1.5x its time without PostgreSQL.
DURABLE_STORES = ["tinydb", "postgres"]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock("2026-11-27T09:00:00")


@pytest.fixture(params=STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    store = store_location(request.param, request, tmp_path, "civicflow.json")
    app = create_app({"TESTING": True, "SECRET_KEY": "test", "STORE": store, "UPLOADS": str(tmp_path / "uploads"),
                      "DEFINITIONS": str(ROOT), "CLOCK": clock})
    add_users(app.extensions["civicflow"].store)
    yield app
    app.extensions["civicflow"].store.close()


class Browser:
    """The Flask test client used like a person uses a browser: read the CSRF token from the page, then post."""

    def __init__(self, app: Any):
        self.app = app
        self.client = app.test_client()
        self.last: Any = None

    def get(self, url: str, **kw: Any) -> Any:
        self.last = self.client.get(url, **kw)
        return self.last

    def token(self, url: str) -> str:
        page = self.client.get(url).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, f"no CSRF token on {url}"
        return match.group(1)

    def post(self, url: str, data: dict[str, Any] | None = None, page: str | None = None, **kw: Any) -> Any:
        data = dict(data or {})
        data.setdefault("csrf_token", self.token(page or url))
        self.last = self.client.post(url, data=data, **kw)
        return self.last

    def login(self, username: str, password: str = PASSWORD) -> "Browser":
        response = self.post("/login", {"username": username, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return self

    def logout(self) -> None:
        self.post("/logout", page="/")


@pytest.fixture
def browser(app: Any) -> Browser:
    return Browser(app)


@pytest.fixture
def as_user(app: Any) -> Any:
    def make(username: str) -> Browser:
        return Browser(app).login(username)
    return make


def definitions_dir(tmp_path: Path) -> Path:
    """The runtime test definitions, with the shipped org tree and roles."""
    root = tmp_path / "defs"
    shutil.copytree(RUNTIME_DEFS, root)
    shutil.copytree(ROOT / "org", root / "org")
    return root


@pytest.fixture
def log() -> list[tuple[str, Any]]:
    return []


@pytest.fixture
def registry(log: list[tuple[str, Any]]) -> ActionRegistry:
    return make_registry(log)


def make_registry(log: list[tuple[str, Any]]) -> ActionRegistry:
    """The actions the runtime test definitions use, recording into ``log`` (also for the browser tests)."""
    registry = ActionRegistry()

    @registry.action("record_before")
    def record_before(ctx: Any) -> None:
        log.append(("before", ctx.case.state, dict(ctx.case.data), len(ctx.case.history)))
        ctx.tx.insert("audit", {"case": ctx.case.id, "by": ctx.user.username})

    @registry.action("record_after")
    def record_after(ctx: Any) -> None:
        log.append(("after", ctx.case.state, dict(ctx.case.data), len(ctx.case.history)))

    @registry.action("explode")
    def explode(ctx: Any) -> None:
        raise RuntimeError("after-action failed")

    for name, fn in (("grant_role", grant_role), ("open_points_account", open_points_account),
                     ("notify_creator", notify_creator)):
        registry.action(name)(fn)
    return registry




GOVERNANCE_DEFS = Path(__file__).parent / "data" / "valid" / "governance"
#: People of the governance examples: (username, name, roles, unit)
GOVERNANCE_USERS = [
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("secretary2", "钱刚", ["community_secretary"], "renjia"),
    ("secretary_wf", "孔亮", ["community_secretary"], "wenfeng"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("grid_wf", "冯磊", ["grid_worker"], "wenfeng-g1"),
    ("street", "郑军", ["street_evaluator"], "huizhou-jie"),
    ("street2", "何平", ["street_evaluator"], "huizhou-jie"),
    ("street3", "施琳", ["street_evaluator"], "huizhou-jie"),
    ("district", "黄蕾", ["district_evaluator"], "huizhou"),
    ("district2", "韩梅", ["district_evaluator"], "huizhou"),
    ("district3", "唐宁", ["district_evaluator"], "huizhou"),
    ("party", "刘洋", ["resident", "party_member"], "renjia-g2"),
    ("party2", "蒋涛", ["resident", "party_member"], "renjia-g1"),
    ("party_wf", "沈洁", ["resident", "party_member"], "wenfeng-g2"),
    ("volunteer", "李强", ["resident", "volunteer"], "renjia-g1"),
    ("volunteer2", "杨帆", ["resident", "volunteer"], "renjia-g2"),
    ("volunteer_wf", "许诺", ["resident", "volunteer"], "wenfeng-g1"),
] + [(f"r{i}", f"居民{i}", ["resident"], "renjia-g1" if i % 2 else "renjia-g2") for i in range(1, 7)] + [
    ("r_wf", "文峰居民", ["resident"], "wenfeng-g1"),
]


def governance_dir(tmp_path: Path) -> Path:
    root = tmp_path / "gov"
    shutil.copytree(GOVERNANCE_DEFS, root)
    shutil.copytree(ROOT / "org", root / "org")
    return root


# ---------------------------------------------------------------- helpers for end-to-end tests of processes

@pytest.fixture
def who(app: Any) -> Any:
    """``who("staff")``: a browser logged in as that user (one per user and test)."""
    sessions: dict[str, Browser] = {}

    def get(username: str) -> Browser:
        if username not in sessions:
            sessions[username] = Browser(app).login(username)
        return sessions[username]
    get.app = app  # type: ignore[attr-defined]
    return get


def started(response: Any) -> int:
    """The case number a successful start form redirected to."""
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    return int(re.search(r"/cases/(\d+)", response.headers["Location"]).group(1))


def act(b: Browser, cid: int, transition: str, **data: Any) -> Any:
    """Take ``transition`` on case ``cid`` the way the case page does (with its version and CSRF token)."""
    page = b.get(f"/cases/{cid}").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', page)
    data.setdefault("version", version.group(1) if version else "")
    return b.post(f"/cases/{cid}/do/{transition}", data, page=f"/cases/{cid}")


def case(app: Any, cid: int) -> dict[str, Any]:
    """The stored case document."""
    return app.extensions["civicflow"].store.get(CASES, cid)


def shipped_app(tmp_path: Path, clock: FrozenClock, users: list[tuple[str, str, list[str], str]],
                store: str | None = None) -> Any:
    """An app on the shipped definitions with a store (default: a TinyDB file; see ``store_location``), a frozen
    clock and ``users`` (use with yield from)."""
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": store or str(tmp_path / "cf.json"),
                      "UPLOADS": str(tmp_path / "up"), "DEFINITIONS": str(ROOT), "CLOCK": clock})
    add_users(app.extensions["civicflow"].store, users)
    yield app
    app.extensions["civicflow"].store.close()


#: The runtime test definitions' purchase request (repeat rows, a photo): a valid start form, and a tiny PNG.
PURCHASE = {"subject": "活动室椅子", "items-0-item": "椅子", "items-0-qty": "4", "items-0-price": "20",
            "amount": "80", "unit": "renjia"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def purchase_app(tmp_path: Path, registry: Any) -> Any:
    """An app on tests/data/valid/runtime (the purchase workflow) with a TinyDB file store."""
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": str(tmp_path / "db.json"),
                      "UPLOADS": str(tmp_path / "up"), "DEFINITIONS": str(definitions_dir(tmp_path)),
                      "ACTIONS": registry})
    add_users(app.extensions["civicflow"].store)
    return app


def report(request: pytest.FixtureRequest, line: str) -> None:
    """Print the figures past pytest's capture, so that every run shows them (also with -q, without -s)."""
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("\n" + line)
