"""Exports people can use (issue 13): the steps' form data next to the start form's, the history as a second
sheet, field ids or labels as headers, dates as date cells in XLSX, and ID and phone numbers that stay text
when the CSV is opened in LibreOffice (real LibreOffice, headless, installed by ``make test``)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from engine.clock import FrozenClock
from engine.web.export import keep_text
from tests.conftest import act, shipped_app, started
from tests.test_volunteer_registration import VALID

PEOPLE = [("resident", "王芳", ["resident"], "renjia-g1"), ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
          ("staff", "陈静", ["community_staff"], "renjia")]
REPORT = {"category": "hazard", "description": "1号楼2单元楼道堆放旧家具，堵塞消防通道", "address": "0571楼道",
          "grid": "renjia-g1", "reporter_type": "resident", "reporter_phone": "13812345678"}
LIBREOFFICE = shutil.which("libreoffice") or shutil.which("soffice") or "libreoffice"  # `make test` installs it


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, PEOPLE)


@pytest.fixture
def resolved(who: Any) -> int:
    cid = started(who("resident").post("/start/problem_report", REPORT))
    assert act(who("grid"), cid, "handle", comment="到现场核实属实").status_code == 302
    assert act(who("grid"), cid, "resolve", resolution="组织志愿者清理楼道", resolved_on="2026-11-28").status_code == 302
    return cid


def csv_rows(response: Any) -> list[list[str]]:
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"), newline="")))


def test_the_steps_data_and_ids_as_headers(who: Any, resolved: int):
    rows = csv_rows(who("staff").get("/workflows/problem_report/export.csv"))
    header, row = rows[0], dict(zip(rows[0], rows[1]))
    assert header.index("问题描述") < header.index("处置情况") < header.index("状态")  # start form, then the steps'
    assert row["处置情况"] == "组织志愿者清理楼道" and row["处置完成日期"] == "2026-11-28"
    only_start = csv_rows(who("staff").get("/workflows/problem_report/export.csv?steps=0"))[0]
    assert "处置情况" not in only_start and "问题描述" in only_start
    ids = csv_rows(who("staff").get("/workflows/problem_report/export.csv?headers=ids"))[0]
    assert ids[:2] == ["id", "category"] and "resolution" in ids and ids[-4:] == ["state", "org_unit", "created_at",
                                                                                 "updated_at"]


def test_one_charset_in_the_content_type(who: Any, resolved: int):
    response = who("staff").get("/workflows/problem_report/export.csv")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"


def test_the_history_as_a_second_sheet_and_as_its_own_csv(who: Any, resolved: int):
    response = who("staff").get("/workflows/problem_report/export.xlsx?history=1")
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    assert book.sheetnames[1] == "办理记录"
    history = [[c.value for c in row] for row in book.worksheets[1].iter_rows()]
    assert history[0][:4] == ["编号", "时间", "操作人", "操作"]
    assert [r[0] for r in history[1:]] == [resolved] * 3 and history[2][6] == "到现场核实属实"
    assert isinstance(history[1][1], dt.datetime)
    rows = csv_rows(who("staff").get("/workflows/problem_report/export.csv?history=1"))
    assert len(rows) == 4 and rows[2][6] == "到现场核实属实"


def test_dates_are_date_cells_in_xlsx(who: Any, resolved: int):
    response = who("staff").get("/workflows/problem_report/export.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).active
    header = [c.value for c in sheet[1]]
    row = [c for c in sheet[2]]
    resolved_on = row[header.index("处置完成日期")]
    assert resolved_on.value == dt.datetime(2026, 11, 28) and resolved_on.number_format == "yyyy-mm-dd"
    assert isinstance(row[header.index("创建时间")].value, dt.datetime)
    assert row[header.index("联系电话")].value == "13812345678" and row[header.index("联系电话")].data_type == "s"


@pytest.mark.parametrize("text, kept", [("110105198506150012", "\t110105198506150012"), ("0571", "\t0571"),
                                        ("1.5e3", "\t1.5e3"), ("13812345678", "\t13812345678"),
                                        ("1号楼", "1号楼"), ("", ""), (12, 12)])
def test_number_like_text_is_marked_to_stay_text(text: Any, kept: Any):
    assert keep_text(text) == kept


def test_the_csv_opened_in_libreoffice_keeps_ids_and_phones_as_text(who: Any, tmp_path: Path):
    started(who("resident").post("/start/volunteer_registration", {**VALID, "id_number": "110105198506150006"}))
    response = who("staff").get("/workflows/volunteer_registration/export.csv")
    assert response.status_code == 200
    source = tmp_path / "export.csv"
    source.write_bytes(response.data)
    # what a person gets opening it in LibreOffice Calc with UTF-8 (the BOM says so), comma-separated
    done = subprocess.run([LIBREOFFICE, "--headless", f"-env:UserInstallation=file://{tmp_path / 'lo-profile'}",
                           "--infilter=CSV:44,34,76,1", "--convert-to", "xlsx", "--outdir", str(tmp_path), str(source)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    sheet = openpyxl.load_workbook(tmp_path / "export.xlsx").active
    header = [c.value for c in sheet[1]]
    row = {h: c.value for h, c in zip(header, sheet[2])}
    assert isinstance(row["身份证号码"], str) and row["身份证号码"].strip() == "110105198506150006"
    assert isinstance(row["手机号码"], str) and row["手机号码"].strip() == "13812345678"
    assert row["年龄"] == 41  # a number field stays a number that sums
