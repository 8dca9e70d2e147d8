"""A paged form and uploads in repeat rows in a real Chromium: 上一步 / 下一步 re-render the fields in place and
move the focus, a page is checked as it is left, the pages fit a 360 px phone and pass axe, the same form
works without JavaScript by posting each page, and the file of each repeat row survives adding a row and a
refused submit."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.axe import assert_accessible
from tests.browser.conftest import PHONE, Server, login, make_app, mark_page, same_page, serve
from tests.browser.test_volunteer_registration import (fill_page_1, fill_page_2, fits_a_phone, next_page, shown_page,
                                                       submit)
from tests.conftest import PNG, definitions_dir, make_registry
from tests.test_row_uploads import FORM, WORKFLOW

URL = "/start/volunteer_registration"


def test_pages_move_in_place_check_what_is_left_and_keep_what_was_typed(page: Any, shipped_server: Server):
    login(page, shipped_server, "resident")
    page.goto(shipped_server.url + URL)
    mark_page(page)
    expect(page.locator(".page-count")).to_have_text("第 1/3 页")
    expect(page.locator(".steps li[aria-current=step]")).to_have_text("基本信息")
    expect(page.locator("fieldset.section legend").first).to_have_text("个人信息")
    expect(page.locator(".page-buttons button")).to_have_text(["下一步"])        # no 上一步, no 提交 on page 1
    assert_accessible(page, "page 1")

    page.click(".page-buttons button[value=next]")                              # nothing typed: refused in place
    expect(page.locator("#name-error")).to_have_text("此项为必填项")
    expect(page.locator("#skills-error")).to_have_count(0)                      # a question of page 2: not yet
    expect(page.locator("#name")).to_be_focused()                               # the first refused question
    assert_accessible(page, "page 1 refused")
    fill_page_1(page)
    expect(page.locator("#name-error")).to_have_count(0)                        # fixed: the live form drops it
    next_page(page, "服务意向")
    expect(shown_page(page)).to_be_focused()                                    # a screen reader hears where it is
    expect(page.locator(".steps li.done")).to_have_text(["基本信息"])
    assert_accessible(page, "page 2")
    page.fill("#occupation", "退休教师")
    page.click(".page-buttons button[value=prev]")                              # back checks nothing ...
    expect(shown_page(page)).to_have_text("基本信息")
    assert page.input_value("#name") == "王芳" and page.input_value("#occupation") == "退休教师"  # ... loses nothing
    next_page(page, "服务意向")
    fill_page_2(page)
    next_page(page, "经历与承诺")
    expect(page.locator(".page-buttons button")).to_have_text(["上一步", "提交"])
    page.check("#pledge")
    assert_accessible(page, "page 3")
    assert same_page(page)
    submit(page)
    page.wait_for_url("**/cases/*")
    expect(page.locator("dl.data")).to_contain_text("退休教师")


def test_enter_moves_to_the_next_page(page: Any, shipped_server: Server):
    login(page, shipped_server, "resident")
    page.goto(shipped_server.url + URL)
    fill_page_1(page)
    page.press("#name", "Enter")   # a posted 下一步 (the form's first submit button on a page that is not the last)
    expect(shown_page(page)).to_have_text("服务意向")


def test_the_pages_fit_a_phone_and_pass_axe(phone: Any, shipped_server: Server):
    login(phone, shipped_server, "resident")
    fits_a_phone(phone, shipped_server.url + URL)
    assert_accessible(phone, "page 1 on a phone")
    fill_page_1(phone)
    next_page(phone, "服务意向")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page 2 is {width} px wide"
    assert_accessible(phone, "page 2 on a phone")


def test_without_javascript_each_button_posts_the_page(chromium: Any, shipped_server: Server):
    context = chromium.new_context(java_script_enabled=False, viewport=PHONE, locale="zh-CN")
    page = context.new_page()
    try:
        login(page, shipped_server, "resident")
        page.goto(shipped_server.url + URL)
        page.fill("#name", "王芳")
        page.select_option("#political_status", "party_member")
        page.click(".page-buttons button[value=next]")                          # posted: page 1 is refused
        expect(page.locator("#phone-error")).to_be_visible()
        expect(page.locator("#party_org-error")).to_be_visible()                # shown by the posted answer
        assert page.input_value("#name") == "王芳"
        fill_page_1(page)
        page.fill("#party_org", "机关党委")
        page.click(".page-buttons button[value=next]")
        expect(shown_page(page)).to_have_text("服务意向")
        fill_page_2(page)
        page.click(".page-buttons button[value=prev]")
        expect(shown_page(page)).to_have_text("基本信息")
        assert page.input_value("#party_org") == "机关党委"
        page.click(".page-buttons button[value=next]")
        page.click(".page-buttons button[value=next]")
        expect(shown_page(page)).to_have_text("经历与承诺")
        page.check("#pledge")
        submit(page)
        page.wait_for_url("**/cases/*")
        expect(page.locator("dl.data")).to_contain_text("机关党委")
    finally:
        context.close()


# --------------------------------------------------------------------------- uploads in repeat rows

@pytest.fixture(scope="module")
def activity_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("activity")
    root = definitions_dir(tmp)
    (root / "forms" / "activity_report.yaml").write_text(FORM, encoding="utf-8")
    (root / "workflows" / "activity.yaml").write_text(WORKFLOW, encoding="utf-8")
    yield from serve(make_app(tmp / "instance", root, ACTIONS=make_registry([])))


def test_each_rows_photo_survives_a_new_row_and_a_refused_submit(page: Any, activity_server: Server, tmp_path: Path):
    photo = tmp_path / "现场.png"
    photo.write_bytes(PNG)
    big = tmp_path / "太大.png"
    big.write_bytes(PNG * 20)
    login(page, activity_server, "resident")
    page.goto(activity_server.url + "/start/activity")
    page.select_option("#unit", "renjia")
    page.fill("#rows-0-what", "打扫卫生")
    page.set_input_files("#rows-0-photo", str(photo))
    expect(page.locator("#rows-0-photo-preview img")).to_be_visible()           # the preview of the chosen photo
    page.click("#add-rows")                                                     # a live update, no reload
    expect(page.locator("#rows-1-what")).to_be_visible()
    assert page.eval_on_selector("#rows-0-photo", "e => e.files.length") == 1    # the chosen file is still there
    page.fill("#rows-1-what", "陪老人聊天")
    page.set_input_files("#rows-1-photo", str(big))
    expect(page.locator("#rows-1-photo-client-error")).to_contain_text("文件太大（最大 1KB）")  # the column's own limit
    assert_accessible(page, "rows with photos")
    submit(page)                                                                # no title: refused
    expect(page.locator("#title-error")).to_be_visible()
    expect(page.locator("#field-rows-0-photo .kept")).to_contain_text("现场.png")  # uploaded and kept
    page.fill("#title", "敬老院探访")
    submit(page)
    page.wait_for_url("**/cases/*")
    link = page.locator("dl.data table a:has-text('现场.png')")
    expect(link).to_be_visible()
    assert page.request.get(activity_server.url + link.get_attribute("href")).body() == PNG
