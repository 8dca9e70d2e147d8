"""People in forms (``type: user``) and the role "the person named in field X" (``roles: [{field: x}]``), through the
pages and the engine on every store: the shipped minutes name a recorder (记录人) who may edit and submit the
draft and finds it in their inbox though their own role does not reach the grid; whoever may not be named is
refused under the field with what was typed kept; names, not usernames, are shown on pages, lists, exports,
history and the API; the picker's search endpoint lists only the people the field may name."""
from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict

from engine import people
from engine.cases import CASES
from engine.fieldtypes import read_post
from engine.spec import FieldSpec, FormSpec
from engine.users import USERS, User, find_user
from tests.conftest import _HASH, act, add_users, case, started
from tests.test_process_meetings import MINUTES

EXTRA = [
    ("grid2", "冯磊", ["grid_worker"], "renjia-g2"),        # the other grid of the community: grid_worker reaches its grid only
    ("grid_wf", "钱多多", ["grid_worker"], "wenfeng-g1"),    # another community
]


@pytest.fixture
def app(app: Any) -> Any:
    store = app.extensions["civicflow"].store
    add_users(store, EXTRA)
    with store.transaction() as tx:  # a grid worker who has left: kept, but no one to name any more
        tx.insert(USERS, User("grid_old", "赵老", ("grid_worker",), "renjia-g1", _HASH, active=False).to_doc())
    return app


def draft(who: Any, recorder: str = "冯磊", by: str = "grid") -> Any:
    return who(by).post("/start/meeting_minutes", {**MINUTES, "recorder": recorder})


def search(b: Any, q: str, **args: Any) -> Any:
    return b.get("/people/search", query_string={"workflow": "meeting_minutes", "field": "recorder", "q": q, **args})


# --------------------------------------------------------------------------- the named person's step and inbox

def test_the_recorder_named_in_the_minutes_finds_the_draft_and_may_submit_it(app: Any, who: Any) -> None:
    engine = app.extensions["civicflow"]
    grid2 = find_user(engine.store, "grid2")
    plain = started(who("grid").post("/start/meeting_minutes", MINUTES))  # nobody named: the drafter alone
    assert who("grid2").get(f"/cases/{plain}").status_code == 404  # a grid worker of another grid sees nothing

    cid = started(draft(who, "冯磊"))  # typed by name, stored by username
    assert case(app, cid)["data"]["recorder"] == "grid2"
    page = who("grid2").get(f"/cases/{cid}")
    assert page.status_code == 200 and "冯磊" in page.get_data(as_text=True)
    assert cid in [c.id for c in engine.inbox(grid2)] and plain not in [c.id for c in engine.inbox(grid2)]
    assert f"/cases/{cid}" in who("grid2").get("/").get_data(as_text=True)
    assert {t.id for t in engine.available_transitions(engine.get(cid), grid2)} == {"submit", "edit"}

    secretary = find_user(engine.store, "secretary")  # sees the community's minutes, but neither drafted nor records them
    assert engine.can_see(engine.get(cid), secretary) and not engine.available_transitions(engine.get(cid), secretary)
    assert act(who("secretary"), cid, "submit").status_code == 403

    assert act(who("grid2"), cid, "submit").status_code == 302
    assert case(app, cid)["state"] == "submitted"
    assert cid not in [c.id for c in engine.inbox(grid2)]  # waiting for the secretary now


def test_renaming_the_recorder_moves_the_draft_to_the_new_inbox(app: Any, who: Any) -> None:
    engine = app.extensions["civicflow"]
    cid = started(draft(who, "grid2"))
    assert act(who("grid"), cid, "edit", **{**MINUTES, "recorder": "陈静（staff）"}).status_code == 302
    assert case(app, cid)["data"]["recorder"] == "staff"
    assert cid not in [c.id for c in engine.inbox(find_user(engine.store, "grid2"))]
    assert who("grid2").get(f"/cases/{cid}").status_code == 404  # no longer named, and out of reach
    assert cid in [c.id for c in engine.inbox(find_user(engine.store, "staff"))]
    page = who("grid").get(f"/cases/{cid}").get_data(as_text=True)
    assert "冯磊 → 陈静" in page  # the history's changes show names, not usernames


# --------------------------------------------------------------------------- who may be named

@pytest.mark.parametrize("typed", ["nobody", "王芳", "钱多多", "grid_old", "赵老"],
                         ids=["unknown", "without-the-role", "other-community", "inactive", "inactive-by-name"])
def test_someone_who_may_not_be_named_is_refused_under_the_field_keeping_what_was_typed(app: Any, who: Any,
                                                                                        typed: str) -> None:
    response = draft(who, typed)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "不在可选人员中" in page and 'id="recorder-error"' in page
    assert f'value="{typed}" selected' in page  # what was typed is kept (the select lists it)
    assert app.extensions["civicflow"].store.count(CASES) == 0


def test_a_live_re_render_keeps_the_refusal_until_someone_who_may_be_named_is_chosen(app: Any, who: Any) -> None:
    from tests.test_web_live import live
    page = draft(who, "钱多多").get_data(as_text=True)
    shown = re.search(r"name=\"_errors\" value='([^']*)'", page).group(1).replace("&#34;", '"')
    assert "recorder" in json.loads(shown)
    still = live(who("grid"), "/start/meeting_minutes/fields", {**MINUTES, "recorder": "钱多多", "_errors": shown})
    assert 'id="recorder-error"' in still.get_data(as_text=True)
    fixed = live(who("grid"), "/start/meeting_minutes/fields", {**MINUTES, "recorder": "grid2", "_errors": shown})
    assert 'id="recorder-error"' not in fixed.get_data(as_text=True)


def test_the_picker_is_a_select_of_the_people_in_reach_and_a_text_box_when_there_are_many(app: Any, who: Any) -> None:
    page = who("grid").get("/start/meeting_minutes").get_data(as_text=True)
    select = page[page.index('<select id="recorder"'):]
    select = select[:select.index("</select>")]
    assert all(f'value="{u}"' in select for u in ("grid", "grid2", "staff"))
    assert not any(f'value="{u}"' in select for u in ("grid_wf", "grid_old", "resident", "secretary", "staff2"))
    assert 'data-user-search="recorder"' in page and "/people/search?workflow=meeting_minutes" in page

    many = [(f"w{i:02d}", f"网格员{i:02d}", ["grid_worker"], "renjia-g1") for i in range(people.SELECT_LIMIT)]
    add_users(app.extensions["civicflow"].store, many)
    page = who("grid").get("/start/meeting_minutes").get_data(as_text=True)
    assert '<select id="recorder"' not in page and '<input id="recorder" name="recorder"' in page
    cid = started(draft(who, "网格员07"))  # without JavaScript: a name only one of them has
    assert case(app, cid)["data"]["recorder"] == "w07"


def test_several_people_by_name_or_username_and_each_checked(app: Any) -> None:
    engine = app.extensions["civicflow"]
    helpers = FieldSpec("helpers", "user", {"zh": "协办人"}, multiple=True, roles=("grid_worker", "community_staff"),
                        scope="community")
    form = FormSpec("f", 1, {}, (helpers,))
    values = read_post(form.fields, MultiDict([("helpers", "赵敏 (grid)、冯磊，staff")]))
    assert engine._validate(form, values, unit_field=None, user=find_user(engine.store, "grid")) == {
        "helpers": ["grid", "grid2", "staff"]}
    assert read_post(form.fields, MultiDict([("helpers", "grid"), ("helpers", "staff")])) == {"helpers": ["grid", "staff"]}
    data = {"helpers": ["grid", "grid_wf", "nobody"]}
    errors = people.check(engine.read, engine.definitions.org, form, data, "renjia-g1")
    assert list(errors) == ["helpers"] and "grid_wf、nobody" in errors["helpers"][0]["zh"]
    assert people.check(engine.read, engine.definitions.org, form, {"helpers": ["grid_wf"]}, "wenfeng") == {}
    everyone = FieldSpec("anyone", "user", {"zh": "任何人"}, scope="all")
    assert {u.username for u in engine.user_choices(everyone, "renjia-g1")} == {
        "resident", "resident2", "staff", "secretary", "staff2", "grid", "admin", "grid2", "grid_wf"}  # active people only
    unit = FieldSpec("here", "user", {"zh": "本网格"}, scope="unit")
    assert {u.username for u in engine.user_choices(unit, "renjia-g1")} == {"resident", "grid"}


# --------------------------------------------------------------------------- names everywhere

def test_names_not_usernames_on_lists_exports_and_the_api(app: Any, who: Any) -> None:
    cid = started(draft(who, "冯磊"))
    export = who("grid").get("/workflows/meeting_minutes/export.csv").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(export.lstrip("\ufeff"))))
    column = rows[0].index("记录人")
    assert rows[1][column] == "冯磊"
    listed = who("grid").get("/workflows/meeting_minutes?state=draft").get_data(as_text=True)
    row = listed[listed.index(f"/cases/{cid}"):]
    assert "<td>冯磊</td>" in row[:row.index("</tr>")]
    api = who("grid").get(f"/api/v1/cases/{cid}").get_json()
    assert api["data"]["recorder"] == "grid2" and api["names"] == {"grid2": "冯磊"}


# --------------------------------------------------------------------------- the search endpoint

def test_search_lists_only_the_active_people_in_reach_that_hold_the_roles(app: Any, who: Any) -> None:
    found = search(who("grid"), "冯")
    assert found.status_code == 200 and found.headers["Cache-Control"] == "no-store"
    assert found.get_json() == {"items": [{"username": "grid2", "name": "冯磊", "unit": "徽州人家社区 / 第二网格"}],
                                "more": False}
    assert [i["username"] for i in search(who("grid"), "赵").get_json()["items"]] == ["grid"]  # not 赵老, inactive
    assert search(who("grid"), "钱多多").get_json()["items"] == []  # another community
    assert search(who("grid"), "王芳").get_json()["items"] == []    # a resident: not a recorder's role
    assert [i["username"] for i in search(who("grid"), "STAFF").get_json()["items"]] == ["staff"]  # usernames too
    assert all(set(i) == {"username", "name", "unit"} for i in search(who("grid"), "").get_json()["items"])
    # the start form's unit so far counts only within the caller's reach: no looking into another community
    assert {i["username"] for i in search(who("staff2"), "", unit="renjia-g1").get_json()["items"]} == {"staff2", "grid_wf"}
    assert [i["username"] for i in search(who("staff"), "冯", unit="renjia-g2").get_json()["items"]] == ["grid2"]


def test_search_answers_only_for_a_form_the_caller_may_fill_in_now(app: Any, who: Any) -> None:
    assert search(who("resident"), "冯").status_code == 404  # may not start minutes
    assert search(who("grid"), "冯", field="topic").status_code == 404  # not a user field
    assert search(who("grid"), "冯", workflow="problem_report").status_code == 404
    cid = started(draft(who, "冯磊"))
    assert [i["username"] for i in search(who("grid2"), "陈", case=cid).get_json()["items"]] == ["staff"]
    assert search(who("staff2"), "陈", case=cid).status_code == 404  # cannot see the case
    assert search(who("staff"), "陈", case=cid).status_code == 404   # sees it, but has no step with that form
    from tests.conftest import Browser
    assert Browser(app).get("/people/search?workflow=meeting_minutes&field=recorder&q=冯").status_code == 302


def test_search_returns_at_most_the_limit(app: Any, who: Any) -> None:
    add_users(app.extensions["civicflow"].store,
              [(f"w{i:02d}", f"网格员{i:02d}", ["grid_worker"], "renjia-g1") for i in range(people.SEARCH_LIMIT + 3)])
    answer = search(who("grid"), "网格员").get_json()
    assert len(answer["items"]) == people.SEARCH_LIMIT and answer["more"] is True
    assert answer["items"][0]["name"] == "网格员00"
