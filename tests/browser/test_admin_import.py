"""The admin's user import in a real Chromium on a 360 px phone: a file with a bad row imports no one and the
page lists the row and why; the fixed file then imports everyone with their generated passwords."""
from __future__ import annotations

from typing import Any

from engine.users import find_user
from tests.browser.conftest import PHONE, Server, login, open_menu


def fits(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def send(page: Any, server: Server, rows: list[str]) -> None:
    page.goto(server.url + "/admin/import")
    page.set_input_files("#file", {"name": "people.csv", "mimeType": "text/csv",
                                   "buffer": "\n".join(rows).encode("utf-8")})
    page.click("main form[enctype] button[type=submit]")
    page.wait_for_selector("#import-report")


def test_import_shows_the_bad_rows_then_imports_the_fixed_file(phone: Any, shipped_server: Server, watch: Any):
    login(phone, shipped_server, "admin")
    open_menu(phone)
    phone.click("header nav a[href='/admin/']")
    phone.wait_for_url("**/admin/")
    rows = ["username,name,roles,unit", "b_one,白一,resident,renjia-g1", "b_two,,resident、wizard,moon"]
    send(phone, shipped_server, rows)
    report = phone.locator("#import-report").inner_text()
    assert "未导入任何用户" in report
    assert "3" in report and "未知角色 wizard" in report and "未知单位 moon" in report and "请填写姓名" in report
    reason = phone.locator("#import-report td", has_text="未知角色")
    assert reason.evaluate("td => td.scrollWidth <= td.clientWidth")  # the reason is read whole, not cut off
    assert find_user(shipped_server.engine.store, "b_one") is None
    assert fits(phone)

    rows[2] = "b_two,白二,resident、volunteer,renjia-g1"  # fixed
    send(phone, shipped_server, rows)
    report = phone.locator("#import-report").inner_text()
    assert "已导入 2 个用户" in report
    assert find_user(shipped_server.engine.store, "b_two").roles == ("resident", "volunteer")
    assert fits(phone)
    phone.goto(shipped_server.url + "/admin/audit")
    assert "导入用户" in phone.locator("main").inner_text()
    assert fits(phone)


def test_admin_pages_fit_a_phone(phone: Any, shipped_server: Server):
    login(phone, shipped_server, "admin")
    for path in ("/admin/", "/admin/users", "/admin/users/new", "/admin/users/staff", "/admin/units",
                 "/admin/processes", "/admin/audit"):
        phone.goto(shipped_server.url + path)
        assert phone.locator("main h1").inner_text() == "管理", path
        assert fits(phone), path
