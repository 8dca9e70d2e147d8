"""List pages as people page through them: the inbox's own cases, /mine, and a filtered list, on the demo data."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine.cases import CASES
from engine.demo import load_demo
from engine.readmodel import PAGE_SIZE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The shipped definitions with the demo users (the conftest password) and the demo cases, on a TinyDB file."""
    from ruamel.yaml import YAML

    from engine.users import USERS, User
    from engine.web import create_app
    from tests.conftest import _HASH

    tmp = tmp_path_factory.mktemp("pages")
    app = create_app({"TESTING": True, "SECRET_KEY": "test", "STORE": str(tmp / "civicflow.json"),
                      "UPLOADS": str(tmp / "uploads"), "DEFINITIONS": str(ROOT)}, start_timers=False)
    engine = app.extensions["civicflow"]
    doc = YAML(typ="safe").load((ROOT / "demo" / "users.yaml").read_text(encoding="utf-8"))
    with engine.store.transaction() as tx:
        for item in doc["users"]:
            tx.insert(USERS, User(item["username"], item["name"], tuple(item["roles"]), item["unit"], _HASH).to_doc())
    load_demo(engine, ROOT / "demo" / "cases")
    yield app
    engine.store.close()


def case_numbers(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'href="/cases/(\d+)"', page)]


def test_the_inbox_shows_the_newest_cases_i_started_and_mine_pages_through_all_of_them(app: Any, who: Any):
    engine = app.extensions["civicflow"]
    docs = engine.store.search(CASES)
    own = [d["id"] for d in sorted((d for d in docs if d["created_by"] == "staff"),
                                   key=lambda d: (d["updated_at"], d["id"]), reverse=True)]
    assert len(own) > PAGE_SIZE  # more than one page, so paging is tried
    staff = who("staff")
    inbox = staff.get("/").get_data(as_text=True)
    mine_part = inbox.split('<h2 id="mine-h">', 1)[1]
    assert case_numbers(mine_part)[:5] == own[:5] and f"全部 {len(own)} 件事项" in mine_part
    seen, page = [], 1
    while True:
        body = staff.get(f"/mine?page={page}").get_data(as_text=True)
        numbers = [n for n in case_numbers(body)]
        assert len(numbers) <= PAGE_SIZE
        seen += numbers
        if 'rel="next"' not in body:
            break
        page += 1
    assert seen == own and page == -(-len(own) // PAGE_SIZE)
    assert case_numbers(who("resident").get("/mine").get_data(as_text=True)) == [
        d["id"] for d in sorted((d for d in docs if d["created_by"] == "resident"),
                                key=lambda d: (d["updated_at"], d["id"]), reverse=True)][:PAGE_SIZE]
    assert app.test_client().get("/mine").status_code == 302  # log in first


def test_a_list_filtered_by_a_choice_shows_exactly_the_matching_cases_the_user_may_see(app: Any, who: Any):
    engine = app.extensions["civicflow"]
    wf, field = engine.definitions.workflows["service_order"], "service_type"
    staff = who("staff")
    from engine.users import find_user
    user = find_user(engine.store, "staff")
    visible = [c for c in engine.cases(user, wf.id)]
    values = {c.data.get(field) for c in visible} - {None}
    assert len(values) >= 2
    for value in values:
        expected = [c.id for c in visible if c.data.get(field) == value]
        body = staff.get(f"/workflows/{wf.id}?{field}={value}").get_data(as_text=True)
        assert case_numbers(body) == expected[:PAGE_SIZE], value
