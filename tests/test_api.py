"""The REST API ``/api/v1``: per-user tokens (made on the account page, hashed at rest, read or write), the same
scope and masking as the pages, start / transition / contribute / claim / object through the one engine path, JSON
errors with field paths in zh and en, CSRF for session writes only."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from engine import tokens
from engine.clock import FrozenClock
from tests.conftest import STORES, Browser, case, shipped_app, store_location

USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident2", "马丽", ["resident"], "renjia-g1"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
    ("street", "郑军", ["street_evaluator"], "huizhou-jie"),
    ("street2", "何平", ["street_evaluator"], "huizhou-jie"),
    ("district2", "韩梅", ["district_evaluator"], "huizhou"),
    ("party", "刘洋", ["resident", "party_member"], "renjia-g2"),
    ("party2", "蒋涛", ["resident", "party_member"], "renjia-g1"),
]
PROPOSAL = {"project_name": "楼道美化行动", "venture_field": "environment", "community": "renjia", "leader": "王芳",
            "leader_phone": "13812345678", "team": [{"member_name": "王芳", "member_task": "统筹"},
                                                    {"member_name": "马丽", "member_task": "彩绘"}],
            "beneficiaries": 300, "budget": 3000,
            "plan": "组织居民和青少年志愿者对1号楼、2号楼楼道进行清理和彩绘，制定楼道公约。",
            "period_start": "2027-03-01", "period_end": "2027-08-31"}
WISH = {"wish_content": "一台助听器", "grid": "renjia-g1", "beneficiary_type": "elderly_alone", "wish_kind": "goods",
        "beneficiary_name": "吴秀珍", "beneficiary_phone": "13805591234", "beneficiary_address": "第一网格1号楼102室",
        "estimated_value": 400, "source": "visit", "wish_details": "82岁独居，听力下降"}


@pytest.fixture(params=STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS, store_location(request.param, request, tmp_path))


@pytest.fixture
def tinydb_app(tmp_path: Path, clock: FrozenClock) -> Any:
    """For the tests where the store does not matter (errors, CSRF, definitions)."""
    yield from shipped_app(tmp_path, clock, USERS)


@pytest.fixture
def demo_app(tmp_path: Path) -> Any:
    """The shipped demo: its people and its 120-odd cases of every process, played through the engine (memory)."""
    from ruamel.yaml import YAML

    from engine.demo import load_demo
    from engine.users import USERS as USER_TABLE
    from engine.users import User, hash_password
    from engine.web import create_app
    from tests.conftest import ROOT

    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": "memory", "UPLOADS": str(tmp_path / "up"),
                      "DEFINITIONS": str(ROOT), "TICK_SECONDS": 0}, start_timers=False)
    engine = app.extensions["civicflow"]
    people = YAML(typ="safe").load((ROOT / "demo" / "users.yaml").read_text(encoding="utf-8"))
    hashed = hash_password(people["password"])
    with engine.store.transaction() as tx:
        for p in people["users"]:
            tx.insert(USER_TABLE, User(p["username"], p["name"], tuple(p["roles"]), p["unit"], hashed).to_doc())
    load_demo(engine, ROOT / "demo" / "cases")
    yield app
    engine.store.close()


class Api:
    """A program calling the API with one person's token."""

    def __init__(self, app: Any, token: str, lang: str | None = None):
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"}
        if lang:
            self.headers["Accept-Language"] = lang

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get("/api/v1" + path, headers=self.headers, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.client.post("/api/v1" + path, headers=self.headers, json=body if body is not None else {}, **kw)


def make_token(app: Any, username: str, scope: str = "write") -> str:
    """A token made on the person's own account page, as a person makes it."""
    b = Browser(app).login(username)
    response = b.post("/account/tokens", {"name": f"{username} script", "scope": scope}, page="/account")
    assert response.status_code == 201, response.get_data(as_text=True)[:2000]
    found = re.search(r'id="new-token">([^<]+)<', response.get_data(as_text=True))
    assert found
    return found.group(1)


def api(app: Any, username: str, scope: str = "write", lang: str | None = None) -> Api:
    return Api(app, make_token(app, username, scope), lang)


# --------------------------------------------------------------------------- tokens

def test_a_token_is_shown_once_kept_only_hashed_and_revoked_on_the_account_page(app: Any):
    b = Browser(app).login("resident")
    assert "API" in b.get("/account").get_data(as_text=True)
    made = b.post("/account/tokens", {"name": "手机脚本", "scope": "read"}, page="/account")
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    token = re.search(r'id="new-token">([^<]+)<', made.get_data(as_text=True)).group(1)
    assert token.startswith("cf_") and len(token) > 40
    page = b.get("/account").get_data(as_text=True)
    assert "手机脚本" in page and token not in page  # shown that once only

    store = app.extensions["civicflow"].store
    (doc,) = store.search(tokens.API_TOKENS)
    assert doc["hash"] == hashlib.sha256(token.encode()).hexdigest() and doc["scope"] == "read"
    everything = json.dumps({t: store.search(t) for t in store.tables()}, ensure_ascii=False)
    assert token not in everything and token[3:] not in everything  # nowhere in the store, in any table

    assert Api(app, token).get("/inbox").status_code == 200
    # another person cannot revoke it
    other = Browser(app).login("resident2")
    other.post(f"/account/tokens/{doc['id']}/revoke", page="/account")
    assert Api(app, token).get("/inbox").status_code == 200
    assert b.post(f"/account/tokens/{doc['id']}/revoke", page="/account").status_code == 302
    refused = Api(app, token, "en").get("/inbox")
    assert refused.status_code == 401 and refused.json["error"]["message"].startswith("The API token is not valid")
    assert "Bearer" in refused.headers["WWW-Authenticate"]
    assert store.get(tokens.API_TOKENS, doc["id"])["revoked_at"]  # kept, marked, for the record
    assert Api(app, "cf_" + "x" * 43).get("/inbox").status_code == 401


def test_a_token_of_a_deactivated_person_is_refused(tinydb_app: Any):
    token = make_token(tinydb_app, "resident")
    store = tinydb_app.extensions["civicflow"].store
    from engine.users import USERS as USER_TABLE
    with store.transaction() as tx:
        (doc,) = [d for d in tx.search(USER_TABLE) if d["username"] == "resident"]
        doc["active"] = False
        tx.replace(USER_TABLE, doc["id"], doc)
    assert Api(tinydb_app, token).get("/inbox").status_code == 401


def test_a_token_name_and_scope_are_checked(tinydb_app: Any):
    b = Browser(tinydb_app).login("resident")
    response = b.post("/account/tokens", {"name": "", "scope": "read"}, page="/account")
    assert response.status_code == 422 and "请给令牌起一个名称" in response.get_data(as_text=True)
    assert b.post("/account/tokens", {"name": "x", "scope": "admin"}, page="/account").status_code == 422
    assert tinydb_app.extensions["civicflow"].store.search(tokens.API_TOKENS) == []


def test_a_read_token_reads_and_may_not_write(app: Any):
    reader = api(app, "resident", scope="read", lang="en")
    assert reader.get("/workflows").status_code == 200
    refused = reader.post("/workflows/micro_venture/cases", {"data": PROPOSAL})
    assert refused.status_code == 403 and refused.json["error"]["message"] == "This token is read-only: it may not change anything."
    assert app.extensions["civicflow"].store.search("cases") == []
    writer = api(app, "resident", scope="write")
    assert writer.post("/workflows/micro_venture/cases", {"data": PROPOSAL}).status_code == 201


def test_no_token_no_session_is_401_in_json(tinydb_app: Any):
    response = tinydb_app.test_client().get("/api/v1/inbox", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert response.status_code == 401 and response.is_json
    assert response.json["error"]["message"].startswith("请提供有效的 API 令牌")


# --------------------------------------------------------------------------- CSRF

def test_token_writes_need_no_csrf_but_session_writes_do(tinydb_app: Any):
    app = tinydb_app
    token = make_token(app, "resident")
    assert Api(app, token).post("/workflows/micro_venture/cases", {"data": PROPOSAL}).status_code == 201

    b = Browser(app).login("resident")
    assert b.client.get("/api/v1/inbox").status_code == 200  # a session reads without a CSRF token
    refused = b.client.post("/api/v1/workflows/micro_venture/cases", json={"data": PROPOSAL},
                            headers={"Accept-Language": "en"})
    assert refused.status_code == 400 and "CSRF" in refused.json["error"]["message"]
    csrf = b.token("/account")
    done = b.client.post("/api/v1/workflows/micro_venture/cases", json={"data": PROPOSAL}, headers={"X-CSRFToken": csrf})
    assert done.status_code == 201
    assert len(app.extensions["civicflow"].store.search("cases")) == 2


# --------------------------------------------------------------------------- scope and masking

def test_another_communitys_case_is_not_found_and_not_listed(app: Any):
    created = api(app, "resident").post("/workflows/micro_venture/cases", {"data": PROPOSAL})
    assert created.status_code == 201
    cid = created.json["id"]
    outsider = api(app, "staff2", lang="en")
    missing = outsider.get(f"/cases/{cid}")
    assert missing.status_code == 404 and missing.json["error"]["message"] == f"case #{cid} does not exist"
    assert Browser(app).login("staff2").get(f"/cases/{cid}").status_code == 404  # as the page says
    listed = outsider.get("/workflows/micro_venture/cases")
    assert listed.status_code == 200 and listed.json["total"] == 0 and listed.json["items"] == []
    step = outsider.post(f"/workflows/micro_venture/cases/{cid}/transitions/accept_entry", {})
    assert step.status_code == 404
    insider = api(app, "staff").get("/workflows/micro_venture/cases")
    assert [c["id"] for c in insider.json["items"]] == [cid] and insider.json["counts"]["submitted"] == 1


def test_sensitive_values_are_masked_as_the_pages_mask_them(app: Any):
    resident, staff, street = api(app, "resident"), api(app, "staff"), api(app, "street")
    cid = resident.post("/workflows/micro_venture/cases", {"data": PROPOSAL}).json["id"]
    assert staff.post(f"/workflows/micro_venture/cases/{cid}/transitions/accept_entry", {}).status_code == 200
    masked = "138****5678"
    for name, client, shown in (("resident", resident, True), ("staff", staff, True), ("street", street, False)):
        got = client.get(f"/cases/{cid}").json
        page = Browser(app).login(name).get(f"/cases/{cid}").get_data(as_text=True)
        assert got["sensitive_shown"] is shown
        assert got["data"]["leader_phone"] == ("13812345678" if shown else masked)
        assert ("13812345678" in page) is shown and (masked in page) is not shown  # the page agrees
    # a list masks for everyone, as the list page does
    (row,) = staff.get("/workflows/micro_venture/cases").json["items"]
    assert row["data"]["leader_phone"] == masked
    assert "13812345678" not in Browser(app).login("staff").get("/workflows/micro_venture").get_data(as_text=True)


# --------------------------------------------------------------------------- moving cases

def test_start_transition_and_contributions_through_the_api_write_history(app: Any):
    resident, staff = api(app, "resident"), api(app, "staff")
    created = resident.post("/workflows/micro_venture/cases", {"data": PROPOSAL})
    assert created.status_code == 201 and created.headers["Location"].endswith(f"/cases/{created.json['id']}")
    cid = created.json["id"]
    assert created.json["state"] == "submitted" and created.json["data"]["team"][1]["member_name"] == "马丽"
    assert [t["id"] for t in staff.get(f"/cases/{cid}").json["transitions"]] == ["accept_entry", "return_for_changes", "reject"]
    assert resident.get(f"/cases/{cid}").json["transitions"] == []

    stale = staff.post(f"/workflows/micro_venture/cases/{cid}/transitions/accept_entry", {"version": 99})
    assert stale.status_code == 409
    moved = staff.post(f"/workflows/micro_venture/cases/{cid}/transitions/accept_entry",
                       {"version": created.json["version"], "comment": "材料齐全"})
    assert moved.status_code == 200 and moved.json["state"] == "scoring"
    again = staff.post(f"/workflows/micro_venture/cases/{cid}/transitions/accept_entry", {})
    assert again.status_code == 409  # not available in this state any more

    for name, value in (("street", 90), ("street2", 60), ("district2", 95)):
        client = api(app, name)
        assert f"{cid}" in json.dumps([c["id"] for c in client.get("/inbox").json["items"]])
        sheet = {"need_fit": value, "feasibility": value, "participation": value, "budget_sense": value}
        done = client.post(f"/cases/{cid}/contributions", {"data": sheet})
        assert done.status_code == 200, done.json
    twice = api(app, "street", lang="en").post(f"/cases/{cid}/contributions", {"data": {"need_fit": 1}})
    assert twice.status_code == 409 and "already submitted" in twice.json["error"]["message"]
    stored = case(app, cid)
    assert stored["data"]["score"]["count"] == 3 and set(stored["contributions"]["scoring"]) == {"street", "street2", "district2"}
    history = [(h["action"], h["by"], h["from"], h["to"], h["comment"]) for h in stored["history"]]
    assert history[0][:2] == ("start", "resident")
    assert history[1] == ("accept_entry", "staff", "submitted", "scoring", "材料齐全")
    assert staff.get(f"/cases/{cid}").json["history"][1]["label"]["zh"] == "初审通过，提交评审"


def test_a_claim_assigns_the_case_to_the_first_who_claims(app: Any):
    grid, staff, party, party2 = (api(app, n, lang="en") for n in ("grid", "staff", "party", "party2"))
    cid = grid.post("/workflows/micro_wish/cases", {"data": WISH}).json["id"]
    early = party.post(f"/cases/{cid}/claim")
    assert early.status_code == 409 or early.status_code == 404  # not published yet: nothing to claim
    verified = staff.post(f"/workflows/micro_wish/cases/{cid}/transitions/verify",
                          {"data": {"verified_on": "2026-11-27", "verify_way": "home"}})
    assert verified.status_code == 200 and verified.json["state"] == "published"
    claimed = party.post(f"/cases/{cid}/claim")
    assert claimed.status_code == 200, claimed.json
    assert claimed.json["state"] == "claimed" and claimed.json["assignees"] == ["party"]
    late = party2.post(f"/cases/{cid}/claim")
    assert late.status_code in (404, 409) and (late.status_code == 404 or "claimed by 刘洋" in late.json["error"]["message"])
    stored = case(app, cid)
    assert [(h["action"], h["by"]) for h in stored["history"]] == [("start", "grid"), ("verify", "staff"), ("claim", "party")]
    kinds = {n["kind"] for n in api(app, "grid").get("/notifications").json["items"]}
    assert "claimed" in kinds
    marked = api(app, "grid").post("/notifications/read")
    assert marked.status_code == 200 and marked.json["marked"] >= 1
    assert all(n["read"] for n in api(app, "grid").get("/notifications").json["items"])


def test_an_objection_to_a_case_on_public_notice(demo_app: Any):
    app = demo_app
    engine = app.extensions["civicflow"]
    on_notice = [c for c in engine.store.search("cases")
                 if (s := engine.definitions.workflows[c["workflow"]].states[c["state"]]).notice and s.notice.objection_roles]
    assert on_notice, "the demo has a case on public notice"
    doc = on_notice[0]
    state = engine.definitions.workflows[doc["workflow"]].states[doc["state"]]
    resident = api(app, "resident3", lang="en")
    empty = resident.post(f"/cases/{doc['id']}/objections", {"reason": ""})
    assert empty.status_code == 422 and list(empty.json["error"]["fields"]) == ["reason"]
    staff = api(app, "staff", lang="en").post(f"/cases/{doc['id']}/objections", {"reason": "不同意"})
    assert staff.status_code == 403  # community staff is no objection role
    filed = resident.post(f"/cases/{doc['id']}/objections", {"reason": "第三条与居民公约不符"})
    assert filed.status_code == 200 and filed.json["state"] == state.notice.objection_to
    last = case(app, doc["id"])["history"][-1]
    assert (last["by"], last["to"], last["comment"]) == ("resident3", state.notice.objection_to, "第三条与居民公约不符")
    again = resident.post(f"/cases/{doc['id']}/objections", {"reason": "再次"})
    assert again.status_code == 404  # no longer on notice, so not on the public page


# --------------------------------------------------------------------------- errors

def test_errors_are_json_with_field_paths_in_the_language_asked(tinydb_app: Any):
    app = tinydb_app
    token = make_token(app, "resident")
    bad = {**PROPOSAL, "leader_phone": "123", "team": [{"member_task": "统筹"}], "budget": "lots"}
    answers = {}
    for lang in ("zh", "en"):
        response = Api(app, token, lang).post("/workflows/micro_venture/cases", {"data": bad})
        assert response.status_code == 422
        answers[lang] = response.json["error"]
    assert set(answers["zh"]["fields"]) >= {"leader_phone", "team.0.member_name", "budget"}
    assert answers["zh"]["message"] == "请更正标出的字段。" and answers["en"]["message"] == "Please correct the marked fields."
    zh, en = answers["zh"]["fields"], answers["en"]["fields"]
    assert zh["team.0.member_name"] == ["此项为必填项"] or zh["team.0.member_name"][0] != en["team.0.member_name"][0]
    # the same messages as the page prints under each field
    page = Browser(app).login("resident").post("/start/micro_venture", {
        **{k: v for k, v in PROPOSAL.items() if k != "team"}, "leader_phone": "123", "budget": "lots",
        "team-0-member_task": "统筹"}).get_data(as_text=True)
    for path in ("leader_phone", "team.0.member_name", "budget"):
        assert zh[path][0] in page, path
    unknown = Api(app, token, "en").post("/workflows/micro_venture/cases", {"data": {**PROPOSAL, "nope": 1, "x": []}})
    assert unknown.status_code == 422 and set(unknown.json["error"]["fields"]) == {"nope", "x"}
    not_json = app.test_client().post("/api/v1/workflows/micro_venture/cases", data="[1,", content_type="application/json",
                                      headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"})
    assert not_json.status_code == 400 and not_json.json["error"]["message"] == "The request body must be a JSON object."
    assert Api(app, token).get("/cases/99999").status_code == 404
    nowhere = Api(app, token, "en").get("/nothing/here")
    assert nowhere.status_code == 404 and nowhere.json["error"]["message"] == "This does not exist, or you may not see it."
    wrong_method = Api(app, token).get("/notifications/read")
    assert wrong_method.status_code == 405 and wrong_method.is_json
    forbidden = Api(app, token, "en").post("/workflows/annual_appraisal/cases", {"data": {}})
    assert forbidden.status_code == 403 and forbidden.json["error"]["message"].startswith("Your role may not start")


def test_file_fields_are_refused_with_their_path(tinydb_app: Any):
    """A file reference typed into JSON could point at someone else's upload: the API takes no file values."""
    engine = tinydb_app.extensions["civicflow"]
    from engine.users import find_user
    found = next((wf, f, name) for wf in engine.definitions.workflows.values()
                 for f in engine.definitions.forms[wf.start_form].fields if f.kind.holds_files
                 for name, *_rest in USERS if engine.may_start(wf, find_user(engine.store, name)))
    wf, field, name = found
    client = api(tinydb_app, name, lang="en")
    refused = client.post(f"/workflows/{wf.id}/cases", {"data": {field.id: {"key": "someone-elses-upload"}}})
    assert refused.status_code == 422
    assert refused.json["error"]["fields"] == {field.id: ["Files cannot be sent through the API yet: use the web page."]}
    described = client.get(f"/forms/{wf.start_form}").json
    assert field.id in described["schema"]["properties"] and field.id not in described["request_schema"]["properties"]
    assert engine.store.search("cases") == []


# --------------------------------------------------------------------------- definitions, figures, OpenAPI

def test_definitions_figures_and_the_openapi_document(tinydb_app: Any):
    app = tinydb_app
    resident = api(app, "resident")
    listed = {w["id"]: w for w in resident.get("/workflows").json["items"]}
    assert listed["micro_venture"]["may_start"] is True
    page = Browser(app).login("resident").get("/workflows").get_data(as_text=True)
    assert set(listed) == set(re.findall(r'href="/workflows/(\w+)"', page))  # what the processes page lists
    hidden = next(w for w in app.extensions["civicflow"].definitions.workflows if w not in listed)
    wf = resident.get("/workflows/micro_venture").json
    assert wf["start_form"] == "venture_proposal" and "venture_score_sheet" in wf["forms"]
    form = resident.get("/forms/venture_proposal").json
    assert form["schema"]["properties"]["leader_phone"]["type"] == "string"
    assert resident.get(f"/workflows/{hidden}").status_code == 404
    figures = api(app, "staff").get("/figures?period=quarter&unit=renjia").json
    assert figures["unit"] == "renjia" and figures["period"] == "quarter" and figures["buckets"][0].count("-Q") == 1
    assert api(app, "staff").get("/figures?unit=wenfeng").json["unit"] == "renjia"  # not theirs: their own

    spec = app.test_client().get("/api/v1/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    defs = app.extensions["civicflow"].definitions
    for workflow in defs.workflows.values():
        start = spec["paths"][f"/workflows/{workflow.id}/cases"]["post"]
        body = start["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["data"] == {"$ref": f"#/components/schemas/form.{workflow.start_form}"}
        for t in workflow.transitions():
            if t.form and t.roles != ("system",):
                step = spec["paths"][f"/workflows/{workflow.id}/cases/{{case_id}}/transitions/{t.id}"]["post"]
                data = step["requestBody"]["content"]["application/json"]["schema"]["properties"]["data"]
                assert {"$ref": f"#/components/schemas/form.{t.form}"} in data.get("oneOf", [data])
    proposal = spec["components"]["schemas"]["form.venture_proposal"]
    assert "leader_phone" in proposal["required"] and proposal["properties"]["team"]["items"]["required"]
    docs = app.test_client().get("/api/v1/docs").get_data(as_text=True)
    assert "vendor/swagger-ui-bundle-5.35.0.js" in docs and "//cdn" not in docs and "https://" not in docs


def test_the_inbox_filters_sorts_and_searches_as_the_page_does(demo_app: Any) -> None:
    """``/api/v1/inbox`` answers the inbox page's own query (process, state, sort, search) with its counts."""
    from engine.inbox import InboxQuery
    from engine.users import find_user
    engine = demo_app.extensions["civicflow"]
    client = Browser(demo_app).login("staff")
    staff = find_user(engine.store, "staff")
    tried = 0
    for args in ({}, {"sort": "due"}, {"sort": "recent"}, {"process": "volunteer_registration"}, {"q": "志愿"},
                 {"page": "2"}):
        expected = engine.read.work.page(staff, InboxQuery.from_args(args, engine.read), 20)
        got = client.get("/api/v1/inbox", query_string=args).get_json()
        assert [c["id"] for c in got["items"]] == [c.id for c in expected.cases.items], args
        assert got["counts"] == expected.counts and got["total"] == expected.cases.total
        tried += len(got["items"])
    assert tried > 0  # the demo's staff has work waiting
