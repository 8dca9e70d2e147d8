"""The admin area through its pages: people of the admin's unit and below, deactivation and the cases it leaves
unassigned, the all-or-nothing import (CSV and XLSX), processes per version, the audit log, and that nobody but
an admin of the right units gets in."""
from __future__ import annotations

import io
import re
from typing import Any

import pytest
from openpyxl import Workbook

from engine.readmodel import AUDIT
from engine.users import find_user
from tests.conftest import PASSWORD, Browser, act, add_users, case, started

COMMUNITY_ADMIN = ("admin_rj", "社区管理员", ["admin"], "renjia")
REPORT = {"category": "hazard", "description": "1号楼2单元楼道堆放旧家具，堵塞消防通道", "address": "1号楼2单元楼道",
          "grid": "renjia-g1", "reporter_type": "resident", "reporter_phone": "13812345678"}


@pytest.fixture
def community_admin(app: Any) -> Browser:
    add_users(app.extensions["civicflow"].store, [COMMUNITY_ADMIN])
    return Browser(app).login("admin_rj")


def store(app: Any) -> Any:
    return app.extensions["civicflow"].store


def user(app: Any, username: str) -> Any:
    return find_user(store(app), username)


def audit(app: Any) -> list[dict[str, Any]]:
    return store(app).search(AUDIT, lambda d: "action" in d)


def login(app: Any, username: str, password: str = PASSWORD) -> Any:
    return Browser(app).post("/login", {"username": username, "password": password})


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def shown_password(response: Any) -> str:
    found = re.search(r'id="password">([^<]+)<', text(response))
    assert found, text(response)[-3000:]
    return found.group(1)


# ------------------------------------------------------------------------------------------ who gets in

def admin_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, url) of the admin blueprint, from the app's URL map (a new route is covered at once)."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint.split(".")[0] != "admin":
                continue
            url = rule.build({"username": "resident"}, append_unknown=False)[1]
            for method in sorted((rule.methods or set()) & {"GET", "POST"}):
                found.append((method, url))
    return found


def test_every_admin_route_is_found(app: Any):
    routes = admin_routes(app)
    assert len(routes) >= 14
    assert ("POST", "/admin/users/resident/deactivate") in routes and ("POST", "/admin/import") in routes


@pytest.mark.parametrize("username", ["resident", "staff", "secretary"])
def test_non_admins_are_refused_on_every_admin_route(app: Any, who: Any, username: str):
    b = who(username)
    token = b.token("/")
    for method, url in admin_routes(app):
        if method == "GET":
            response = b.get(url)
        else:
            response = b.client.post(url, data={"csrf_token": token, "name": "x", "roles": "admin", "unit": "huizhou",
                                                "username": "intruder", "password": "secret123"})
        assert response.status_code == 403, (method, url, response.status_code)
    assert user(app, "intruder") is None and user(app, "resident").active and audit(app) == []
    assert "/admin/" not in text(b.get("/"))  # no menu link either


def test_anonymous_visitors_are_sent_to_the_login_page(app: Any):
    b = Browser(app)
    token = b.token("/login")
    for method, url in admin_routes(app):
        response = b.get(url) if method == "GET" else b.client.post(url, data={"csrf_token": token})
        assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url)


def test_admins_see_the_menu_link(who: Any):
    assert 'href="/admin/"' in text(who("admin").get("/"))


def test_an_admin_of_one_community_does_not_reach_another(app: Any, community_admin: Browser):
    listing = text(community_admin.get("/admin/users"))
    assert "staff" in listing and "staff2" not in listing  # staff2 belongs to wenfeng
    assert community_admin.get("/admin/users/staff2").status_code == 403
    token = community_admin.token("/admin/users")
    for url in ("/admin/users/staff2", "/admin/users/staff2/password", "/admin/users/staff2/deactivate",
                "/admin/users/admin/deactivate"):  # the district's admin sits above this one
        response = community_admin.client.post(url, data={"csrf_token": token, "name": "x", "roles": "resident",
                                                          "unit": "renjia"})
        assert response.status_code == 403, url
    assert user(app, "staff2").active and user(app, "staff2").name == "吴婷"
    # nor may they create or move people into another community
    response = community_admin.post("/admin/users/new", {"username": "newbie", "name": "新人", "roles": "resident",
                                                         "unit": "wenfeng-g1"})
    assert response.status_code == 422 and "不在您管理的范围内" in text(response) and user(app, "newbie") is None
    response = community_admin.post("/admin/users/staff", {"name": "陈静", "roles": "community_staff", "unit": "wenfeng"})
    assert response.status_code == 422 and user(app, "staff").org_unit == "renjia"
    assert "wenfeng" not in text(community_admin.get("/admin/units"))
    assert audit(app) == []


# ------------------------------------------------------------------------------------------ one user at a time

def test_create_with_a_generated_password_then_edit_and_reset(app: Any, who: Any):
    admin = who("admin")
    response = admin.post("/admin/users/new", {"username": "wang_w", "name": "王伟", "roles": ["resident", "volunteer"],
                                               "unit": "renjia-g2"})
    assert response.status_code == 200
    generated = shown_password(response)
    assert len(generated) >= 8
    created = user(app, "wang_w")
    assert created.roles == ("resident", "volunteer") and created.org_unit == "renjia-g2" and created.active
    assert login(app, "wang_w", generated).status_code == 302
    assert generated not in str(store(app).search(AUDIT))  # never a password in the log

    response = admin.post("/admin/users/wang_w", {"name": "王伟伟", "roles": ["grid_worker"], "unit": "renjia-g1"})
    assert response.status_code == 302
    edited = user(app, "wang_w")
    assert (edited.name, edited.roles, edited.org_unit) == ("王伟伟", ("grid_worker",), "renjia-g1")

    response = admin.post("/admin/users/wang_w/password", {"password": "temp-4321"}, page="/admin/users/wang_w")
    assert response.status_code == 200 and shown_password(response) == "temp-4321"
    assert login(app, "wang_w", generated).status_code == 401
    assert login(app, "wang_w", "temp-4321").status_code == 302
    response = admin.post("/admin/users/wang_w/password", {}, page="/admin/users/wang_w")
    fresh = shown_password(response)
    assert fresh != "temp-4321" and login(app, "wang_w", fresh).status_code == 302

    actions = [(e["action"], e["target"], e["by"]) for e in audit(app)]
    assert actions == [("create", "wang_w", "admin"), ("edit", "wang_w", "admin"),
                       ("reset_password", "wang_w", "admin"), ("reset_password", "wang_w", "admin")]
    edit = audit(app)[1]
    assert edit["details"]["roles"] == [["resident", "volunteer"], ["grid_worker"]]
    assert "temp-4321" not in str(audit(app)) and fresh not in str(audit(app))


def test_create_refuses_bad_input_and_keeps_what_was_typed(app: Any, who: Any):
    admin = who("admin")
    response = admin.post("/admin/users/new", {"username": "staff", "name": "", "roles": ["nobody"], "unit": "huizhou",
                                               "password": "123"})
    page = text(response)
    assert response.status_code == 422
    for expected in ("用户名 staff 已存在", "请填写姓名", "未知角色 nobody", "密码至少 8 位"):
        assert expected in page
    assert 'value="staff"' in page
    assert audit(app) == []


def test_users_are_paged_and_searched(app: Any, who: Any):
    add_users(store(app), [(f"p{i:02}", f"居民{i:02}", ["resident"], "wenfeng-g2") for i in range(25)])
    admin = who("admin")
    first = text(admin.get("/admin/users"))
    assert 'rel="next"' in first  # 25 + the demo people, 20 a page
    assert "p24" not in first and "p24" in text(admin.get("/admin/users?page=2"))
    found = text(admin.get("/admin/users?q=居民07"))
    assert "p07" in found and "p08" not in found and "staff" not in found
    assert "p03" in text(admin.get("/admin/users?q=P03"))  # usernames match whatever the case
    by_unit = text(admin.get("/admin/users?unit=renjia"))
    assert "staff" in by_unit and "staff2" not in by_unit and "p01" not in by_unit


def test_an_admin_cannot_lock_themselves_out(app: Any, who: Any):
    admin = who("admin")
    response = admin.post("/admin/users/admin", {"name": "管理员", "roles": ["resident"], "unit": "huizhou"})
    assert response.status_code == 422 and user(app, "admin").roles == ("admin",)
    response = admin.post("/admin/users/admin/deactivate", {}, page="/admin/users/admin")
    assert response.status_code == 403 and user(app, "admin").active


# ------------------------------------------------------------------------------------------ deactivation

def test_a_deactivated_user_cannot_log_in_and_their_cases_wait_for_reassignment(app: Any, who: Any):
    cid = started(who("resident").post("/start/problem_report", REPORT))
    grid = who("grid")
    assert act(grid, cid, "handle", comment="到现场核实属实").status_code == 302
    assert case(app, cid)["assignees"] == ["grid"]
    admin = who("admin")
    assert "没有指派给已停用用户的未办结事项" in text(admin.get("/admin/"))

    assert admin.post("/admin/users/grid/deactivate", {}, page="/admin/users/grid").status_code == 302
    assert not user(app, "grid").active
    response = login(app, "grid")
    assert response.status_code == 401 and "该账号已停用" in text(response)
    assert login(app, "grid", "wrong-one").status_code == 401
    assert "该账号已停用" not in text(login(app, "grid", "wrong-one"))  # no hint without the password
    # the session that was open ends at once
    assert grid.get("/").status_code == 302
    overview = text(admin.get("/admin/"))
    assert f'href="/cases/{cid}"' in overview and "赵敏 (grid)" in overview
    assert "已停用" in text(admin.get("/admin/users"))

    assert admin.post("/admin/users/grid/reactivate", {}, page="/admin/users/grid").status_code == 302
    assert user(app, "grid").active and login(app, "grid").status_code == 302
    assert f'href="/cases/{cid}"' not in text(admin.get("/admin/"))
    assert [e["action"] for e in audit(app)] == ["deactivate", "reactivate"]


def test_a_deactivated_user_is_no_longer_found_under_their_roles(app: Any, who: Any):
    engine = app.extensions["civicflow"]
    assert "grid" in [u.username for u in engine.users(role="grid_worker")]
    who("admin").post("/admin/users/grid/deactivate", {}, page="/admin/users/grid")
    assert "grid" not in [u.username for u in engine.users(role="grid_worker")]  # not assigned nor notified


# ------------------------------------------------------------------------------------------ import

def csv_file(rows: list[str], encoding: str = "utf-8-sig") -> tuple[io.BytesIO, str]:
    return io.BytesIO("\n".join(rows).encode(encoding)), "people.csv"


def upload(b: Browser, content: tuple[io.BytesIO, str]) -> Any:
    return b.post("/admin/import", {"file": content}, page="/admin/import", content_type="multipart/form-data")


def test_import_with_a_bad_row_imports_nothing_and_reports_every_bad_row(app: Any, who: Any):
    rows = ["username,name,roles,unit,password",
            "li_a,李安,resident,renjia-g1,",
            "li_b,李波,resident、nobody,renjia-g1,",          # row 3: unknown role
            "li_c,李超,resident,moon,",                       # row 4: unknown unit
            "staff,陈静,resident,renjia,",                    # row 5: exists
            "li_a,李安二,resident,renjia-g1,",               # row 6: twice in the file
            "li_d,,resident,renjia-g1,abc"]                   # row 7: no name, short password
    response = upload(who("admin"), csv_file(rows))
    page = text(response)
    assert response.status_code == 422 and "未导入任何用户" in page
    report = page[page.index('id="import-report"'):]
    for row, reason in ((3, "未知角色 nobody"), (4, "未知单位 moon"), (5, "用户名 staff 已存在"),
                        (6, "用户名 li_a 在文件中重复"), (7, "请填写姓名"), (7, "密码至少 8 位")):
        assert re.search(rf"<td>{row}</td>.*?{reason}", report, re.S), (row, reason)
    assert "<td>2</td>" not in report  # the good row is not reported
    assert user(app, "li_a") is None and user(app, "li_b") is None
    assert audit(app) == []


def test_import_out_of_scope_unit_is_a_bad_row(app: Any, community_admin: Browser):
    rows = ["username,name,roles,unit", "ok_one,好人,resident,renjia-g2", "far,远方,resident,wenfeng-g1"]
    page = text(upload(community_admin, csv_file(rows)))
    assert re.search(r"<td>3</td>.*?不在您管理的范围内", page, re.S)
    assert user(app, "ok_one") is None


def test_a_good_csv_imports_everyone_and_shows_generated_passwords_once(app: Any, who: Any):
    rows = ["用户名,姓名,角色,单位,密码",  # Chinese headers, roles separated by 、, a unit by its name, GB18030 as Excel saves it
            "zhou_a,周安,resident、volunteer,文峰社区,",
            "zhou_b,周博,grid_worker,renjia-g2,given-pass7"]
    admin = who("admin")
    response = upload(admin, csv_file(rows, "gb18030"))
    page = text(response)
    assert response.status_code == 200 and "已导入 2 个用户" in page
    a, b = user(app, "zhou_a"), user(app, "zhou_b")
    assert a.roles == ("resident", "volunteer") and a.org_unit == "wenfeng" and b.org_unit == "renjia-g2"
    generated = re.search(r"<td>周安</td><td>([^<]+)</td>", page).group(1)
    assert login(app, "zhou_a", generated).status_code == 302
    assert login(app, "zhou_b", "given-pass7").status_code == 302
    assert "given-pass7" not in page
    entries = audit(app)
    assert len(entries) == 1 and entries[0]["action"] == "import" and entries[0]["details"]["count"] == 2
    assert generated not in str(entries) and "given-pass7" not in str(entries)
    assert "导入用户" in text(admin.get("/admin/audit"))


def xlsx_file(rows: list[list[Any]]) -> tuple[io.BytesIO, str]:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    data = io.BytesIO()
    book.save(data)
    data.seek(0)
    return data, "people.xlsx"


def test_a_good_xlsx_imports(app: Any, who: Any):
    rows = [["username", "name", "roles", "unit", "password"],
            ["xu_a", "徐安", "resident, party_member", "renjia-g1", None],
            [None, None, None, None, None],  # an empty row in the sheet is skipped
            ["xu_b", "徐博", "community_staff", "renjia", "pass-123456"]]
    response = upload(who("admin"), xlsx_file(rows))
    assert response.status_code == 200, text(response)[-2000:]
    assert user(app, "xu_a").roles == ("resident", "party_member") and user(app, "xu_b").org_unit == "renjia"
    assert login(app, "xu_b", "pass-123456").status_code == 302


def test_a_bad_xlsx_row_imports_nothing(app: Any, who: Any):
    rows = [["username", "name", "roles", "unit"], ["xu_a", "徐安", "resident", "renjia-g1"], ["xu_b", "", "", "renjia"]]
    page = text(upload(who("admin"), xlsx_file(rows)))
    assert re.search(r"<td>3</td>.*?请填写姓名.*?请至少选择一个角色", page, re.S)
    assert user(app, "xu_a") is None


@pytest.mark.parametrize("data, filename, message", [
    (b"username,name\n", "x.txt", "请上传 .xlsx 或 .csv 文件"),
    (b"not a zip", "x.xlsx", "这不是一个 Excel"),
    (b"PK\x03\x04broken", "x.xlsx", "无法读取该 Excel 文件"),
    (b"username,name\nx,y\n", "x.csv", "表头缺少列：roles, unit"),
    (b"username,name,roles,unit\n", "x.csv", "没有数据"),
    (b"", "x.csv", "文件是空的"),
    (b"a" * (2 * 1024 * 1024 + 10), "x.csv", "文件过大"),
])
def test_files_that_cannot_be_read_get_a_clear_message(app: Any, who: Any, data: bytes, filename: str, message: str):
    response = upload(who("admin"), (io.BytesIO(data), filename))
    assert response.status_code == 422 and message in text(response)


# ------------------------------------------------------------------------------------------ units, processes, audit

def test_org_units_with_user_counts(app: Any, who: Any, community_admin: Browser):
    page = text(who("admin").get("/admin/units"))
    assert "徽州人家社区" in page and "文峰社区" in page
    renjia = page[page.index("徽州人家社区"):]
    assert "3 个用户" in renjia[:400]  # staff, secretary, admin_rj
    assert "文峰社区" not in text(community_admin.get("/admin/units"))


def test_processes_show_versions_and_running_cases(app: Any, who: Any):
    started(who("resident").post("/start/problem_report", REPORT))
    cid = started(who("resident").post("/start/problem_report", REPORT))
    engine = app.extensions["civicflow"]
    wf = engine.definitions.workflows["problem_report"]
    assert dict((v, n) for v, _d, n in engine.versions("problem_report"))[wf.version] == 2
    page = text(who("admin").get("/admin/processes"))
    row = page[page.index(f'href="/workflows/problem_report"'):]
    assert f"v{wf.version}: 2" in row[:400]
    assert case(app, cid)["workflow_version"] == wf.version


def test_the_audit_log_is_newest_first_and_scoped(app: Any, who: Any, community_admin: Browser):
    admin = who("admin")
    admin.post("/admin/users/new", {"username": "in_wf", "name": "文峰人", "roles": "resident", "unit": "wenfeng-g1",
                                    "password": "secret123"})
    community_admin.post("/admin/users/new", {"username": "in_rj", "name": "人家人", "roles": "resident",
                                              "unit": "renjia-g1", "password": "secret123"})
    page = text(admin.get("/admin/audit"))
    assert page.index("in_rj") < page.index("in_wf")  # newest first
    local = text(community_admin.get("/admin/audit"))
    assert "in_rj" in local and "in_wf" not in local
    entry = next(e for e in audit(app) if e["target"] == "in_wf")
    assert entry["by"] == "admin" and entry["at"].startswith("2026-11-27") and "secret123" not in str(entry)
