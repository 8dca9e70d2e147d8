"""Form keys through the pages (issue 12, point 4): a form's description is shown, a note is text between the
questions that nothing stores or exports, a time field, required_if with its asterisk following the form as it
changes, and a field's own required message, on every store."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.web import create_app
from tests.conftest import STORES, Browser, add_users, case, started, store_location

ROOT = Path(__file__).resolve().parents[1]
FORM = """\
id: activity_signup
version: 1
title: {zh: 活动报名, en: Activity sign-up}
description: {zh: 报名后社区将电话确认。, en: The community confirms by phone.}
fields:
  - {id: safety, type: note, label: {zh: 以下信息仅用于活动安全保障。, en: Used only for the activity's safety.}, help: 不对外公开}
  - {id: name, type: text, label: {zh: 姓名, en: Name}, required: true, required_message: {zh: 请填写报名人姓名, en: Enter who signs up}}
  - {id: id_number, type: id_number, label: {zh: 身份证号码, en: ID number}, required: true, sensitive: true}
  - {id: grid, type: orgunit, level: grid, label: 所在网格, required: true}
  - {id: arrive_at, type: time, label: {zh: 到场时间, en: Arrival}, required: true}
  - {id: guardian_phone, type: phone, label: {zh: 监护人电话, en: Guardian's phone},
     required_if: "id_valid(id_number) and age_on(id_number, '2026-12-05') < 18",
     required_message: {zh: 未成年人请填写监护人电话, en: A minor needs a guardian's phone}}
  - {id: sex, type: select, label: 性别, choices: gender, compute: id_sex(id_number)}
"""
WORKFLOW = """\
id: activity_signup
version: 1
title: {zh: 活动报名, en: Activity sign-up}
start: {form: activity_signup, roles: [resident], org_unit_field: grid, title: name}
roles: [resident, community_staff]
initial: submitted
states:
  submitted:
    title: 待确认
    inbox: [community_staff]
    transitions:
      - {id: confirm, to: confirmed, label: 确认, roles: [community_staff]}
  confirmed: {title: 已确认, final: true}
"""
ADULT, MINOR = "11010519491231002X", "110105201001010010"


@pytest.fixture(params=STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    root = tmp_path / "defs"
    for part in ("org", "forms", "workflows"):
        shutil.copytree(ROOT / part, root / part)
    (root / "forms" / "activity_signup.yaml").write_text(FORM, encoding="utf-8")
    (root / "workflows" / "activity_signup.yaml").write_text(WORKFLOW, encoding="utf-8")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "UPLOADS": str(tmp_path / "up"), "CLOCK": FrozenClock(),
                      "STORE": store_location(request.param, request, tmp_path, "cf.json"), "DEFINITIONS": str(root)})
    add_users(app.extensions["civicflow"].store)
    yield app
    app.extensions["civicflow"].store.close()


def asterisk(page: str, field: str) -> bool:
    match = re.search(rf'<label for="{field}" id="{field}-label">(.*?)</label>', page, re.S)
    assert match, f"no label of {field}"
    return 'class="req"' in match.group(1)


def test_the_form_page_shows_description_note_and_time(app: Any):
    page = Browser(app).login("resident").get("/start/activity_signup").get_data(as_text=True)
    assert '<p class="form-description">报名后社区将电话确认。</p>' in page
    assert "以下信息仅用于活动安全保障。" in page and "不对外公开" in page
    assert 'name="safety"' not in page  # a note has no input
    assert re.search(r'<input id="arrive_at" name="arrive_at" value=""\s+type="time"', page)
    assert asterisk(page, "name") and not asterisk(page, "guardian_phone")


def test_required_if_and_required_message_through_the_pages(app: Any):
    resident = Browser(app).login("resident")
    form = {"id_number": MINOR, "grid": "renjia-g1", "arrive_at": "9:30"}
    live = resident.post("/start/activity_signup/fields", form, page="/start/activity_signup").get_data(as_text=True)
    assert asterisk(live, "guardian_phone")  # a minor: the guardian's phone is required now
    refused = resident.post("/start/activity_signup", form)
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert "请填写报名人姓名" in page and "未成年人请填写监护人电话" in page and "此项为必填项" not in page
    assert f'value="{MINOR}"' in page and 'value="9:30"' in page  # what was typed is kept, as typed

    cid = started(resident.post("/start/activity_signup", {**form, "name": "小明", "guardian_phone": "13812345678"}))
    doc = case(app, cid)
    assert doc["data"]["arrive_at"] == "09:30" and doc["data"]["sex"] == "male" and "safety" not in doc["data"]
    adult = started(resident.post("/start/activity_signup", {**form, "name": "王芳", "id_number": ADULT}))
    assert case(app, adult)["data"]["sex"] == "female" and "guardian_phone" not in case(app, adult)["data"]

    staff = Browser(app).login("staff")
    shown = staff.get(f"/cases/{cid}").get_data(as_text=True)
    assert "09:30" in shown and "以下信息仅用于活动安全保障" not in shown
    export = staff.get("/workflows/activity_signup/export.csv").get_data().decode("utf-8-sig")
    header = export.splitlines()[0]
    assert "到场时间" in header and "以下信息" not in header and "09:30" in export
