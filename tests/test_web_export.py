"""Exports of a case list: the rows of the list page, masked where the page would mask, safe in a spreadsheet."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from engine.cases import CASES
from engine.web import create_app
from engine.web.export import neutralise
from tests.conftest import Browser, add_users, definitions_dir, new_id_number
from tests.test_volunteer_registration import act, case_id, register

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def read_csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.data.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel then reads Chinese correctly
    rows = csv.reader(io.StringIO(response.data.decode("utf-8-sig"), newline=""))
    # a tab in front keeps a number-like text (ID, phone) a text cell in a spreadsheet; test_export_cells.py
    # checks that in LibreOffice; here the values are compared as typed
    return [[c[1:] if c.startswith("\t") else c for c in row] for row in rows]


def read_xlsx(response: Any) -> list[list[Any]]:
    assert response.status_code == 200 and response.mimetype == XLSX
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).active
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)  # no formula anywhere
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


@pytest.fixture
def cases(app: Any, as_user: Any) -> dict[str, int]:
    """Two applications in 徽州人家社区: one harmless, one typed by someone trying formula injection."""
    applicant = as_user("resident")
    plain = case_id(register(applicant))
    hostile = case_id(register(applicant, name="=1+2", id_number=new_id_number(), occupation="-2+3+cmd|' /C calc'!A0",
                               address="@SUM(1,2)", political_status="party_member", party_org="+party"))
    return {"plain": plain, "hostile": hostile}


def test_neutralise_prefixes_what_a_spreadsheet_would_run():
    for text in ("=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "＝1+2"):
        assert neutralise(text) == "'" + text
    for text in ("王芳", "1-2", "a=b", "'=already"):
        assert neutralise(text) == text


def test_csv_has_every_start_form_field_and_staff_see_sensitive_values(cases: dict[str, int], as_user: Any):
    rows = read_csv(as_user("staff").get("/workflows/volunteer_registration/export.csv"))
    header = rows[0]
    assert header[0] == "编号" and header[-4:] == ["状态", "所属组织", "创建时间", "更新时间"]
    assert header[1:-4] == ["姓名", "性别", "手机号码", "身份证号码", "年龄", "政治面貌", "所在党组织", "职业",
                            "服务技能/特长", "其他特长", "可服务时间", "所在网格", "楼栋及门牌号", "曾参加过志愿服务",
                            "志愿服务经历", "本人承诺以上信息真实，自愿参加志愿服务"]
    by_id = {row[0]: dict(zip(header, row)) for row in rows[1:]}
    assert set(by_id) == {str(cases["plain"]), str(cases["hostile"])}
    plain = by_id[str(cases["plain"])]
    assert plain["姓名"] == "王芳" and plain["手机号码"] == "13812345678" and plain["身份证号码"] == "11010519491231002X"
    assert plain["年龄"] == "76" and plain["服务技能/特长"] == "教育辅导、关爱老人" and plain["状态"] == "待审核"
    assert plain["所在网格"] == "徽州区 / 徽州街道 / 徽州人家社区 / 第一网格" and plain["创建时间"] == "2026-11-27 09:00"
    hostile = by_id[str(cases["hostile"])]
    assert hostile["姓名"] == "'=1+2" and hostile["职业"] == "'-2+3+cmd|' /C calc'!A0"
    assert hostile["楼栋及门牌号"] == "'@SUM(1,2)" and hostile["所在党组织"] == "'+party"


def test_masked_for_someone_who_sees_the_case_but_not_its_personal_data(app: Any, cases: dict[str, int],
                                                                          as_user: Any):
    store = app.extensions["civicflow"].store
    with store.transaction() as tx:  # escalated to the grid worker: may see the case, not the applicant's data
        for cid in cases.values():
            doc = tx.get(CASES, cid)
            doc["escalated_to"] = ["grid"]
            tx.replace(CASES, cid, doc)
    grid = as_user("grid")
    for rows in (read_csv(grid.get("/workflows/volunteer_registration/export.csv")),
                 read_xlsx(grid.get("/workflows/volunteer_registration/export.xlsx"))):
        header = rows[0]
        by_id = {str(row[0]): dict(zip(header, row)) for row in rows[1:]}
        assert by_id[str(cases["plain"])]["手机号码"] == "138****5678"
        assert by_id[str(cases["plain"])]["身份证号码"] == "1101**********002X"
        assert by_id[str(cases["plain"])]["楼栋及门牌号"] == "1****2"
        assert by_id[str(cases["hostile"])]["楼栋及门牌号"] == "'@S*****2)"  # masked, then neutralised
        assert by_id[str(cases["plain"])]["姓名"] == "王芳"  # not sensitive
    assert not any("13812345678" in str(v) for row in rows for v in row)


def test_xlsx_holds_the_same_rows_with_numbers_as_numbers(cases: dict[str, int], as_user: Any):
    staff = as_user("staff")
    response = staff.get("/workflows/volunteer_registration/export.xlsx")
    assert re.match(r'attachment; filename=volunteer_registration-\d{8}-\d{4}\.xlsx', response.headers["Content-Disposition"])
    assert response.headers["Cache-Control"] == "no-store"
    rows = read_xlsx(response)
    header = rows[0]
    by_id = {row[0]: dict(zip(header, row)) for row in rows[1:]}
    assert set(by_id) == {cases["plain"], cases["hostile"]}
    assert by_id[cases["plain"]]["年龄"] == 76 and by_id[cases["plain"]]["手机号码"] == "13812345678"
    assert by_id[cases["hostile"]]["姓名"] == "'=1+2" and by_id[cases["hostile"]]["职业"].startswith("'-2+3")
    csv_rows = read_csv(staff.get("/workflows/volunteer_registration/export.csv"))
    assert [str(v) if v is not None else "" for v in rows[0]] == csv_rows[0]
    assert len(csv_rows) == len(rows)


def test_export_follows_the_state_filter_of_the_list(cases: dict[str, int], as_user: Any):
    staff = as_user("staff")
    act(staff, cases["plain"], "approve")
    page = staff.get("/workflows/volunteer_registration?state=active").get_data(as_text=True)
    assert 'href="/workflows/volunteer_registration/export.xlsx?state=active"' in page
    assert 'href="/workflows/volunteer_registration/export.csv?state=active"' in page
    rows = read_csv(staff.get("/workflows/volunteer_registration/export.csv?state=active"))
    assert [r[0] for r in rows[1:]] == [str(cases["plain"])]
    rows = read_csv(staff.get("/workflows/volunteer_registration/export.csv?state=submitted"))
    assert [r[0] for r in rows[1:]] == [str(cases["hostile"])]


def test_export_scope_is_the_list_scope(app: Any, cases: dict[str, int], as_user: Any):
    other_community = as_user("staff2")
    assert read_csv(other_community.get("/workflows/volunteer_registration/export.csv"))[1:] == []
    assert read_xlsx(other_community.get("/workflows/volunteer_registration/export.xlsx"))[1:] == []
    neighbour = as_user("resident2")  # may start a registration, sees only their own
    assert read_csv(neighbour.get("/workflows/volunteer_registration/export.csv"))[1:] == []
    assert as_user("grid").get("/workflows/volunteer_registration/export.csv").status_code == 403
    assert as_user("staff").get("/workflows/volunteer_registration/export.pdf").status_code == 404
    assert Browser(app).get("/workflows/volunteer_registration/export.csv").status_code == 302  # to the login page


@pytest.fixture
def purchase_app(tmp_path: Path, registry: Any) -> Any:
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": str(tmp_path / "db.json"),
                      "UPLOADS": str(tmp_path / "up"), "DEFINITIONS": str(definitions_dir(tmp_path)),
                      "ACTIONS": registry})
    add_users(app.extensions["civicflow"].store)
    return app


def test_repeat_rows_are_summarised_and_files_named(purchase_app: Any):
    buyer = Browser(purchase_app).login("resident")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    data = {"subject": "活动室椅子", "items-0-item": "椅子", "items-0-qty": "4", "items-0-price": "20",
            "items-1-item": "=桌子", "items-1-qty": "1", "items-1-price": "50.5", "amount": "130.5", "unit": "renjia",
            "receipt": (io.BytesIO(png), "票据.png")}
    assert buyer.post("/start/purchase", data, content_type="multipart/form-data").status_code == 302
    rows = read_xlsx(Browser(purchase_app).login("staff").get("/workflows/purchase/export.xlsx"))
    row = dict(zip(rows[0], rows[1]))
    assert row["物品清单"] == "物品: 椅子，数量: 4，单价: 20\n物品: =桌子，数量: 1，单价: 50.5"
    assert row["金额"] == 130.5 and row["票据照片"] == "票据.png" and row["加急"] == "否"


def test_a_csv_is_sent_in_pieces_that_add_up_to_the_whole_list(app: Any, as_user: Any,
                                                                 monkeypatch: pytest.MonkeyPatch):
    """A large list is streamed ``CSV_CHUNK`` rows at a time (the first bytes leave before the last row is made);
    the pieces join into the same file, with the byte order mark once, at the start."""
    from engine.web import export

    applicant = as_user("resident")
    ids = {case_id(register(applicant, name=f"居民{n}", id_number=new_id_number())) for n in range(5)}
    monkeypatch.setattr(export, "CSV_CHUNK", 2)
    response = as_user("staff").client.get("/workflows/volunteer_registration/export.csv", buffered=False)
    assert response.is_streamed
    pieces = list(response.response)
    assert len(pieces) == 3  # 2 + 2 + 1 rows; the header rides with the first
    whole = b"".join(pieces)
    assert whole.count(b"\xef\xbb\xbf") == 1 and whole.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(whole.decode("utf-8-sig"), newline="")))
    assert {int(r[0]) for r in rows[1:]} == ids
    response.close()
