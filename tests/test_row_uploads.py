"""Uploads inside repeat rows (each row of an activity report carries its photo), through the pages on TinyDB
and PostgreSQL: limits per column, nothing uploaded is lost while rows are added or removed or the form is
refused, only people who see the case download a row's file, exports name the file of each row, the history
records the change, and a deleted row drops its file from the case."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.errors import SubmissionError
from tests.conftest import (DURABLE_STORES, PNG, Browser, add_users, case, definitions_dir, started,
                            store_location)
from engine.web import create_app

FORM = """\
id: activity_report
version: 1
title: {zh: 志愿活动记录, en: Activity report}
fields:
  - {id: title, type: text, label: {zh: 活动名称, en: Activity}, required: true, max_length: 40}
  - {id: unit, type: orgunit, level: community, label: {zh: 社区, en: Community}, required: true}
  - id: rows
    type: repeat
    label: {zh: 活动明细, en: What was done}
    min_rows: 1
    max_rows: 3
    fields:
      - {id: what, type: text, label: {zh: 内容, en: What}, required: true}
      - {id: photo, type: photo, label: {zh: 现场照片, en: Photo}, max_size: 1KB}
      - {id: sheet, type: file, label: {zh: 签到表, en: Sign-in sheet}, accept: [application/pdf]}
"""
WORKFLOW = """\
id: activity
version: 1
title: {zh: 志愿活动, en: Volunteer activity}
start: {form: activity_report, roles: [resident], org_unit_field: unit, title: title}
roles: [resident, community_staff]
initial: submitted
states:
  submitted:
    title: {zh: 待审核, en: Submitted}
    transitions:
      - {id: revise, to: submitted, label: {zh: 修改, en: Revise}, roles: [creator], form: activity_report}
      - {id: accept, to: accepted, label: {zh: 通过, en: Accept}, roles: [community_staff]}
  accepted: {title: {zh: 已通过, en: Accepted}, final: true}
"""
BASE = {"title": "敬老院探访", "unit": "renjia", "rows-0-what": "打扫卫生"}
PDF = b"%PDF-1.4\n" + b"0" * 100


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, registry: Any) -> Any:
    root = definitions_dir(tmp_path)
    (root / "forms" / "activity_report.yaml").write_text(FORM, encoding="utf-8")
    (root / "workflows" / "activity.yaml").write_text(WORKFLOW, encoding="utf-8")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": store_location(request.param, request, tmp_path),
                      "UPLOADS": str(tmp_path / "up"), "DEFINITIONS": str(root),
                      "CLOCK": FrozenClock("2026-11-27T09:00:00"), "ACTIONS": registry})
    add_users(app.extensions["civicflow"].store)
    yield app
    app.extensions["civicflow"].store.close()


def upload(data: bytes, name: str) -> tuple[io.BytesIO, str]:
    return io.BytesIO(data), name


def keeps(page: str) -> dict[str, str]:
    """The files the page keeps from an earlier post: input name -> upload key."""
    return dict(re.findall(r'name="([\w-]+)__keep" value="([^"]+)"', page))


def post(b: Browser, url: str, data: dict[str, Any], page: str | None = None) -> Any:
    return b.post(url, data, page=page, content_type="multipart/form-data")


def test_each_row_keeps_its_file_through_a_refusal_and_row_changes(app: Any, who: Any):
    resident = who("resident")
    first = {**BASE, "rows-0-photo": upload(PNG, "现场.png"), "rows-1-what": "陪老人聊天",
             "rows-1-photo": upload(PNG * 20, "太大.png"), "rows-1-sheet": upload(PNG, "签到.png")}
    refused = post(resident, "/start/activity", first)
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    # the limits of each column, under the row's own field
    assert 'id="rows.1.photo-error">文件太大（最大 1KB）<' in page
    assert 'id="rows.1.sheet-error">不支持的文件类型（可用：pdf）<' in page
    kept = keeps(page)
    assert set(kept) == {"rows-0-photo"} and "现场.png" in page  # the good upload is kept, the typed rows too
    assert 'value="陪老人聊天"' in page

    # add a row: the kept file stays with its row
    added = post(resident, "/start/activity", {**BASE, "rows-0-photo__keep": kept["rows-0-photo"],
                                               "rows-1-what": "陪老人聊天", "_add_row": "rows"})
    page = added.get_data(as_text=True)
    assert 'name="rows-2-what"' in page and keeps(page) == kept
    # remove the first row: the second row's new file is saved and moves up to row 0
    removed = post(resident, "/start/activity", {**BASE, "rows-0-photo__keep": kept["rows-0-photo"],
                                                 "rows-1-what": "陪老人聊天", "rows-1-sheet": upload(PDF, "签到表.pdf"),
                                                 "_remove_row": "rows-0"})
    page = removed.get_data(as_text=True)
    assert 'value="陪老人聊天"' in page and 'value="打扫卫生"' not in page
    assert set(keeps(page)) == {"rows-0-sheet"} and "签到表.pdf" in page

    done = post(resident, "/start/activity", {**BASE, "rows-0-photo__keep": kept["rows-0-photo"],
                                              "rows-1-what": "陪老人聊天", "rows-1-sheet__keep": keeps(page)["rows-0-sheet"]})
    cid = started(done)
    rows = case(app, cid)["data"]["rows"]
    assert rows[0]["photo"]["name"] == "现场.png" and rows[0]["photo"]["content_type"] == "image/png"
    assert rows[1]["sheet"]["name"] == "签到表.pdf" and "photo" not in rows[1]
    assert app.extensions["civicflow"].read.mentioning(rows[1]["sheet"]["key"])[0].id == cid  # the file index


def test_only_those_who_see_the_case_download_a_rows_file_and_a_deleted_row_drops_it(app: Any, who: Any):
    resident = who("resident")
    cid = started(post(resident, "/start/activity", {**BASE, "rows-0-photo": upload(PNG, "现场.png"),
                                                     "rows-1-what": "陪老人聊天",
                                                     "rows-1-sheet": upload(PDF, "签到表.pdf")}))
    rows = case(app, cid)["data"]["rows"]
    photo, sheet = rows[0]["photo"]["key"], rows[1]["sheet"]["key"]
    staff, outsider = who("staff"), who("staff2")  # staff2 works in another community
    assert staff.get(f"/files/{sheet}").status_code == 200
    assert staff.get(f"/files/{photo}").data == PNG
    assert outsider.get(f"/files/{sheet}").status_code == 404
    assert outsider.get(f"/files/{photo}").status_code == 404
    page = staff.get(f"/cases/{cid}").get_data(as_text=True)
    assert f"/files/{photo}" in page and "签到表.pdf" in page  # the case page shows the rows' files

    # the CSV export names the file of each row
    export = staff.get("/workflows/activity/export.csv").get_data(as_text=True)
    assert "现场.png" in export and "签到表.pdf" in export

    # the creator revises: the first row (with the photo) is deleted, the second keeps its sheet
    form = resident.get(f"/cases/{cid}/do/revise").get_data(as_text=True)
    assert keeps(form) == {"rows-0-photo": photo, "rows-1-sheet": sheet}  # the step form shows the files kept
    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    removed = post(resident, f"/cases/{cid}/do/revise", {**BASE, "rows-0-photo__keep": photo,
                                                         "rows-1-what": "陪老人聊天", "rows-1-sheet__keep": sheet,
                                                         "_remove_row": "rows-0", "version": version},
                   page=f"/cases/{cid}/do/revise")
    page = removed.get_data(as_text=True)
    assert keeps(page) == {"rows-0-sheet": sheet}
    done = post(resident, f"/cases/{cid}/do/revise", {"title": BASE["title"], "unit": "renjia",
                                                      "rows-0-what": "陪老人聊天", "rows-0-sheet__keep": sheet,
                                                      "version": version}, page=f"/cases/{cid}/do/revise")
    assert done.status_code == 302
    doc = case(app, cid)
    assert doc["data"]["rows"] == [{"what": "陪老人聊天", "sheet": rows[1]["sheet"]}]
    change = doc["history"][-1]["changes"]
    assert change == [{"field": "rows", "old": rows, "new": doc["data"]["rows"]}]  # the history has both lists
    assert staff.get(f"/files/{photo}").status_code == 404      # no case holds it any more
    assert resident.get(f"/files/{photo}").status_code == 200   # its uploader still may
    assert staff.get(f"/files/{sheet}").status_code == 200
    assert app.extensions["civicflow"].read.mentioning(photo) == []


def test_a_file_from_someone_elses_upload_cannot_be_claimed_in_a_row(app: Any, who: Any):
    other = who("resident2")
    refused = post(other, "/start/activity", {**BASE, "rows-0-photo": upload(PNG, "a.png"), "title": ""})
    key = keeps(refused.get_data(as_text=True))["rows-0-photo"]
    resident = who("resident")
    cid = started(post(resident, "/start/activity", {**BASE, "rows-0-photo__keep": key}))
    assert "photo" not in case(app, cid)["data"]["rows"][0]  # a key of another's upload is not taken


def test_the_api_takes_no_file_in_a_row_but_keeps_the_one_a_row_holds(app: Any, who: Any):
    from tests.test_api import api
    resident = who("resident")
    cid = started(post(resident, "/start/activity", {**BASE, "rows-0-photo": upload(PNG, "现场.png")}))
    held = case(app, cid)["data"]["rows"][0]["photo"]
    client = api(app, "resident", lang="en")
    refused = client.post("/workflows/activity/cases", {"data": {
        "title": "又一次", "unit": "renjia", "rows": [{"what": "扫地", "photo": held}]}})  # another case's file
    assert refused.status_code == 422
    assert refused.json["error"]["fields"] == {"rows.0.photo": ["Files cannot be sent through the API yet: use the web page."]}
    schema = client.get("/forms/activity_report").json["request_schema"]
    assert set(schema["properties"]["rows"]["items"]["properties"]) == {"what"}
    # a step sends the row back as it read it: its file stays; a row without it drops it
    kept = client.post(f"/workflows/activity/cases/{cid}/transitions/revise",
                       {"data": {"rows": [{"what": "打扫卫生和擦窗", "photo": held}]}})
    assert kept.status_code == 200, kept.json
    assert case(app, cid)["data"]["rows"] == [{"what": "打扫卫生和擦窗", "photo": held}]
    dropped = client.post(f"/workflows/activity/cases/{cid}/transitions/revise", {"data": {"rows": [{"what": "擦窗"}]}})
    assert dropped.status_code == 200 and case(app, cid)["data"]["rows"] == [{"what": "擦窗"}]
    assert app.extensions["civicflow"].read.mentioning(held["key"]) == []


def test_the_engine_files_each_rows_upload_and_forgets_a_deleted_rows(app: Any):
    """Straight through the engine (no page): the read model's file index follows the rows in the same write."""
    from engine.users import find_user
    engine = app.extensions["civicflow"]
    resident = find_user(engine.store, "resident")
    photo = {"name": "a.png", "key": "k-photo.png", "size": 72, "content_type": "image/png"}
    sheet = {"name": "b.pdf", "key": "k-sheet.pdf", "size": 109, "content_type": "application/pdf"}
    started_case = engine.start("activity", resident, {**{k: v for k, v in BASE.items() if "-" not in k},
                                                       "rows": [{"what": "扫地", "photo": photo},
                                                                {"what": "擦窗", "sheet": sheet}]})
    assert [c.id for c in engine.read.mentioning("k-photo.png")] == [started_case.id]
    assert [c.id for c in engine.read.mentioning("k-sheet.pdf")] == [started_case.id]
    with pytest.raises(SubmissionError) as refused:  # the column's own type limit
        engine.start("activity", resident, {"title": "x", "unit": "renjia", "rows": [{"what": "扫地", "sheet": photo}]})
    assert "rows.0.sheet" in refused.value.errors
    moved = engine.fire(started_case.id, "revise", resident, {"title": "敬老院探访", "unit": "renjia",
                                                              "rows": [{"what": "擦窗", "sheet": sheet}]})
    assert moved.version == started_case.version + 1
    assert engine.read.mentioning("k-photo.png") == []
    assert [c.id for c in engine.read.mentioning("k-sheet.pdf")] == [started_case.id]
    assert moved.history[-1]["changes"][0]["field"] == "rows"
