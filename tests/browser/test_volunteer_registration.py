"""志愿者注册 in a real Chromium: the applicant fills the live form, staff approve; the language switch,
the phone viewport, the diagram, the XLSX export and markup typed into every text field."""
from __future__ import annotations

import io
import re
from typing import Any

import openpyxl
from playwright.sync_api import expect

from engine.cases import CASES
from tests.browser.conftest import (Server, login, logout, mark_page, no_injected_markup, same_page)
from tests.conftest import new_id_number

ID_NUMBER = "11010519491231002X"  # born 1949-12-31: 76 on the frozen 2026-11-27


def shown_page(page: Any) -> Any:
    """The title of the page of the form shown now (the form is in three pages: 基本信息, 服务意向, 经历与承诺)."""
    return page.locator(".form-page:not([hidden]) .page-title")


def next_page(page: Any, title: str) -> None:
    page.click(".page-buttons button[value=next]")
    expect(shown_page(page)).to_have_text(title)


def fill_page_1(page: Any, name: str = "王芳", phone: str = "138 1234 5678", id_number: str | None = None) -> None:
    """Page 1 of the registration; a fresh ID number unless one is given (one registration per ID number)."""
    page.fill("#name", name)
    page.select_option("#gender", "female")
    page.fill("#phone", phone)
    page.fill("#id_number", id_number or new_id_number())


def fill_page_2(page: Any, grid: str = "renjia-g1") -> None:
    page.fill("#occupation", "退休教师")
    page.check("input[name=skills][value=tutoring]")
    page.check("input[name=available_times][value=weekend]")
    page.select_option("#grid", grid)
    page.fill("#address", "1号楼302")


def fill_registration(page: Any, name: str = "王芳", grid: str = "renjia-g1") -> None:
    """Every page, each left by 下一步; ends on the last page (经历与承诺) with the pledge ticked."""
    fill_page_1(page, name)
    next_page(page, "服务意向")
    fill_page_2(page, grid)
    next_page(page, "经历与承诺")
    page.check("#pledge")


def submit(page: Any) -> None:
    page.click("form .actions button.primary")


def diagram_state(page: Any, state: str) -> Any:
    return page.locator(f"svg.workflow-diagram g.dg-state[data-state='{state}']")


def test_applicant_registers_with_a_live_form_and_staff_approve(page: Any, shipped_server: Server):
    login(page, shipped_server, "resident")
    page.click("nav a[href='/start']")
    page.click("a[href='/start/volunteer_registration']")
    mark_page(page)
    expect(page.locator("button[name=_refresh]")).to_be_hidden()  # JavaScript is on: no need
    expect(page.locator(".page-count")).to_have_text("第 1/3 页")
    fill_page_1(page, id_number=ID_NUMBER)
    expect(page.locator("#age_years")).to_have_text("76")                      # computed from the ID number
    expect(page.locator("#party_org")).to_have_count(0)
    page.select_option("#political_status", "party_member")
    expect(page.locator("#party_org")).to_be_visible()                         # show_if appears ...
    page.fill("#party_org", "徽州区机关党委")
    next_page(page, "服务意向")
    expect(page.locator(".page-count")).to_have_text("第 2/3 页")
    fill_page_2(page)
    page.check("input[name=skills][value=other]")
    expect(page.locator("#skills_other")).to_be_visible()
    page.fill("#skills_other", "摄影")
    page.uncheck("input[name=skills][value=other]")
    expect(page.locator("#skills_other")).to_have_count(0)                     # ... and goes again
    next_page(page, "经历与承诺")
    page.check("#has_experience")
    expect(page.locator("#experience")).to_be_visible()
    page.fill("#experience", "社区义诊两年")
    page.check("#pledge")
    assert same_page(page)  # all of it, the pages too, without a reload
    assert page.input_value("#name") == "王芳" and page.input_value("#party_org") == "徽州区机关党委"
    submit(page)
    page.wait_for_url("**/cases/*")
    case_url = page.url
    expect(page.locator(".flash")).to_contain_text("待审核")
    expect(page.locator("dl.data")).to_contain_text("徽州区机关党委")
    expect(diagram_state(page, "submitted")).to_have_class("dg-state dg-current dg-visited")
    logout(page)

    login(page, shipped_server, "staff")
    page.click("main a[href='" + case_url.removeprefix(shipped_server.url) + "']")  # from the inbox
    expect(page.locator("dl.data")).to_contain_text(ID_NUMBER)                # staff who review see it whole
    page.click("form.step button:has-text('审核通过')")
    expect(page.locator(".flash")).to_contain_text("审核通过")
    expect(page.locator(".meta .state")).to_have_text("已注册")
    expect(diagram_state(page, "active")).to_have_class("dg-state dg-current dg-visited dg-final")
    expect(diagram_state(page, "submitted")).to_have_class("dg-state dg-visited")
    expect(page.locator("g.dg-edge.dg-taken")).to_have_count(1)
    assert page.locator("g.dg-edge.dg-taken").get_attribute("data-transition") == "submitted.approve"
    assert "volunteer" in shipped_server.user("resident").roles


def test_an_invalid_submission_keeps_every_typed_value(page: Any, shipped_server: Server):
    """A wrong phone on page 1 that reaches the submit is refused there (the submit checks every page): the form
    opens at page 1, with everything typed on all three pages kept."""
    login(page, shipped_server, "resident")
    page.goto(shipped_server.url + "/start/volunteer_registration")
    fill_page_1(page, name="李四", id_number=(number := new_id_number()))
    page.select_option("#political_status", "party_member")
    page.fill("#party_org", "机关党委")
    next_page(page, "服务意向")
    fill_page_2(page)
    page.check("input[name=skills][value=other]")
    page.fill("#skills_other", "摄影")
    next_page(page, "经历与承诺")
    page.check("#has_experience")
    page.fill("#experience", "两年\n社区义诊")
    page.check("#pledge")
    # the phone is changed behind the pages' back (as a stale tab would post it): only the submit can catch it
    page.wait_for_load_state("networkidle")  # after the live re-render of the last tick, not before it
    page.evaluate("document.getElementById('phone').value = '12345'")
    submit(page)
    expect(page.locator("main > .alert")).to_contain_text("您已填写的内容都已保留")
    expect(shown_page(page)).to_have_text("基本信息")                           # the first page with a problem
    expect(page.locator("#phone-error")).to_contain_text("11位手机号码")
    assert page.get_attribute("#phone", "aria-invalid") == "true"
    values = {f: page.input_value("#" + f) for f in ("name", "phone", "id_number", "occupation", "party_org",
                                                     "skills_other", "address", "experience", "gender",
                                                     "political_status", "grid")}
    assert values == {"name": "李四", "phone": "12345", "id_number": number, "occupation": "退休教师",
                      "party_org": "机关党委", "skills_other": "摄影", "address": "1号楼302",
                      "experience": "两年\n社区义诊", "gender": "female", "political_status": "party_member",
                      "grid": "renjia-g1"}
    checked = page.eval_on_selector_all("input[type=checkbox]:checked", "els => els.map(e => e.name + '=' + e.value)")
    assert sorted(checked) == ["available_times=weekend", "has_experience=1", "pledge=1", "skills=other",
                               "skills=tutoring"]
    expect(page.locator("#age_years")).to_have_text("76")
    # fixing the phone makes its error go while typing, before the next submit
    page.fill("#phone", "13812345678")
    expect(page.locator("#phone-error")).to_have_count(0)


def test_the_language_switch_is_remembered_for_the_user(page: Any, shipped_server: Server):
    login(page, shipped_server, "secretary")
    expect(page.locator("h1")).to_have_text("收件箱")
    page.click("header button:has-text('English')")
    expect(page.locator("h1")).to_have_text("Inbox")
    assert page.get_attribute("html", "lang") == "en"
    page.goto(shipped_server.url + "/workflows/volunteer_registration")
    expect(page.locator("h1")).to_have_text("Volunteer registration")         # texts from the YAML too
    expect(page.locator(".filters")).to_contain_text("Awaiting review")
    page.click("a:has-text('Process diagram')")
    expect(page.locator("g.dg-label[data-transition='submitted.approve']")).to_contain_text("Approve")
    logout(page)
    page.context.clear_cookies()
    login(page, shipped_server, "secretary")                                   # a new session
    expect(page.locator("h1")).to_have_text("Inbox")
    page.click("header button:has-text('中文')")
    expect(page.locator("h1")).to_have_text("收件箱")
    assert shipped_server.user("secretary").lang == "zh"


def fits_a_phone(phone: Any, url: str) -> None:
    """No sideways scrolling, tap targets of at least 40 px, every input labelled."""
    phone.goto(url)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{url} is {width} px wide"
    small = phone.evaluate("""() => [...document.querySelectorAll(
          'main button, main .btn, main input:not([type=hidden]):not([type=checkbox]):not([type=radio]), '
        + 'main select, main textarea, main label.choice, header a, header button, .filters a')]
        .filter(e => e.offsetParent !== null && !e.classList.contains('default-submit'))
        .filter(e => e.getBoundingClientRect().height < 40)
        .map(e => e.outerHTML.slice(0, 80))""")
    assert small == [], f"{url}: tap targets under 40 px: {small}"
    unlabelled = phone.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => !e.classList.contains('default-submit'))
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.name)""")
    assert unlabelled == [], f"{url}: inputs without a label: {unlabelled}"


def test_pages_fit_a_phone(phone: Any, shipped_server: Server):
    engine = shipped_server.engine
    case = engine.start("volunteer_registration", shipped_server.user("resident"), {
        "name": "欧阳娜娜超长的名字也要折行显示", "phone": "13812345678", "id_number": new_id_number(),
        "skills": ["tutoring", "elderly_care", "mediation", "it"], "available_times": ["weekend"],
        "grid": "renjia-g1", "pledge": True, "address": "徽州人家社区第一网格1号楼2单元302室"})
    fits_a_phone(phone, shipped_server.url + "/login")
    login(phone, shipped_server, "resident")
    for path in ("/", "/start/volunteer_registration", f"/cases/{case.id}", "/workflows/volunteer_registration",
                 "/workflows/volunteer_registration/diagram", "/notifications"):
        fits_a_phone(phone, shipped_server.url + path)
    # the diagram is wider than the phone: it scrolls inside its own box, the page does not,
    # and it starts scrolled to the current state
    phone.goto(shipped_server.url + f"/cases/{case.id}")
    box = phone.locator(".diagram").first
    assert box.evaluate("e => e.scrollWidth > e.clientWidth")
    current = phone.locator("g.dg-current").bounding_box()
    frame = box.bounding_box()
    assert frame["x"] <= current["x"] and current["x"] + current["width"] <= frame["x"] + frame["width"]
    box.focus()  # a keyboard user can scroll it too
    before = box.evaluate("e => e.scrollLeft")
    phone.keyboard.press("ArrowRight")
    phone.wait_for_function("([e, x]) => e.scrollLeft !== x", arg=[box.element_handle(), before])
    login(phone, shipped_server, "staff")
    fits_a_phone(phone, shipped_server.url + "/")           # the staff inbox
    fits_a_phone(phone, shipped_server.url + f"/cases/{case.id}")  # with the actions


def test_xlsx_export_downloaded_in_the_browser_is_masked_and_safe(page: Any, shipped_server: Server):
    engine = shipped_server.engine
    case = engine.start("volunteer_registration", shipped_server.user("resident"), {
        "name": "=HYPERLINK(\"x\")", "phone": "13812345678", "id_number": (number := new_id_number()), "occupation": "-1+2",
        "skills": ["tutoring"], "available_times": ["weekend"], "grid": "renjia-g1", "pledge": True,
        "address": "@SUM(1,2)"})
    with engine.store.transaction() as tx:  # the grid worker was told it went overdue: sees it, not its personal data
        doc = tx.get(CASES, case.id)
        doc["escalated_to"] = ["grid"]
        tx.replace(CASES, case.id, doc)
    grid = shipped_server.user("grid")
    assert engine.can_see(engine.get(case.id), grid) and not engine.may_see_sensitive(engine.get(case.id), grid)
    login(page, shipped_server, "grid")
    page.goto(shipped_server.url + "/workflows/volunteer_registration")
    with page.expect_download() as download:
        page.click("a:has-text('导出 Excel')")
    assert download.value.suggested_filename.endswith(".xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(open(download.value.path(), "rb").read())).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    got = dict(zip(rows[0], rows[1]))
    assert len(rows) == 2 and got["编号"] == case.id
    assert got["手机号码"] == "138****5678" and got["身份证号码"] == number[:4] + "*" * 10 + number[-4:]
    assert got["姓名"] == "'=HYPERLINK(\"x\")" and got["职业"] == "'-1+2"
    assert got["楼栋及门牌号"] == "'@S*****2)"  # masked, and still not a formula


PAYLOADS = {  # each fits the field's max_length, so the browser lets all of it be typed
    "name": "<svg onload=alert()>",
    "occupation": '"><img src=x onerror=alert(2)>',
    "party_org": "<script>alert(4)</script>",
    "skills_other": "'><svg onload=alert(5)>",
    "address": "<img src=x onerror=alert(6)>",
    "experience": "</textarea><script>alert(7)</script>",
}


def test_markup_typed_into_every_text_field_stays_text(page: Any, shipped_server: Server):
    login(page, shipped_server, "resident2")
    page.goto(shipped_server.url + "/start/volunteer_registration")
    fill_page_1(page, name=PAYLOADS["name"], phone="<b>1</b>")  # phone and ID number are refused, shown back as typed
    page.fill("#id_number", "<i>x</i>")
    page.select_option("#political_status", "party_member")
    page.fill("#party_org", PAYLOADS["party_org"])
    page.wait_for_timeout(600)              # let a live update re-render the fields with the payloads
    no_injected_markup(page)
    page.click(".page-buttons button[value=next]")
    expect(page.locator("#phone-error")).to_be_visible()                       # page 1 is checked as it is left
    assert page.input_value("#phone") == "<b>1</b>" and page.input_value("#name") == PAYLOADS["name"]
    no_injected_markup(page)
    page.fill("#phone", "13812345678")
    page.fill("#id_number", new_id_number())  # (one registration per ID number: the first test's is taken)
    next_page(page, "服务意向")
    fill_page_2(page, grid="wenfeng-g1")
    page.check("input[name=skills][value=other]")
    for field in ("occupation", "skills_other", "address"):
        page.fill("#" + field, PAYLOADS[field])
    next_page(page, "经历与承诺")
    page.check("#has_experience")
    expect(page.locator("#experience")).to_be_visible()
    page.fill("#experience", PAYLOADS["experience"])
    page.check("#pledge")
    page.wait_for_timeout(600)
    no_injected_markup(page)
    submit(page)
    page.wait_for_url("**/cases/*")
    case_path = page.url.removeprefix(shipped_server.url)
    text = page.inner_text("main")
    assert all(p in text for p in PAYLOADS.values())
    no_injected_markup(page)
    for path in ("/", "/workflows/volunteer_registration"):
        page.goto(shipped_server.url + path)
        assert PAYLOADS["name"] in page.inner_text("main")
        no_injected_markup(page)
    logout(page)

    login(page, shipped_server, "staff2")  # the other community's staff handle it
    assert PAYLOADS["name"] in page.inner_text("main")   # the inbox
    no_injected_markup(page)
    page.goto(shipped_server.url + case_path)
    assert all(p in page.inner_text("main") for p in PAYLOADS.values())
    page.fill("#comment-return_for_changes", "<script>alert(8)</script>")
    page.click("form.step button:has-text('退回修改')")
    expect(page.locator("blockquote")).to_have_text("<script>alert(8)</script>")
    no_injected_markup(page)
    logout(page)

    login(page, shipped_server, "resident2")
    for path in ("/notifications", case_path, case_path + "/do/resubmit"):
        page.goto(shipped_server.url + path)
        assert PAYLOADS["name"] in (page.inner_text("main") + page.title()) or path.endswith("resubmit")
        no_injected_markup(page)
    assert page.input_value("#name") == PAYLOADS["name"] and page.input_value("#experience") == PAYLOADS["experience"]


def test_the_case_page_prints_on_a4(page: Any, shipped_server: Server):
    engine = shipped_server.engine
    case = engine.start("volunteer_registration", shipped_server.user("resident"), {
        "name": "王芳", "phone": "13812345678", "id_number": new_id_number(), "skills": ["tutoring"],
        "available_times": ["weekend"], "grid": "renjia-g1", "pledge": True})
    engine.fire(case.id, "return_for_changes", shipped_server.user("staff"), {}, comment="请补充职业")
    login(page, shipped_server, "staff")
    page.goto(shipped_server.url + f"/cases/{case.id}")
    expect(page.locator("button[data-print]")).to_be_visible()
    page.set_viewport_size({"width": 688, "height": 1000})  # A4 less 14 mm margins, at 96 dpi
    page.emulate_media(media="print")
    for hidden in ("header.top", "button[data-print]", ".diagram", "section[aria-labelledby=actions-h]"):
        expect(page.locator(hidden).first).to_be_hidden()
    for shown in ("h1", "dl.data", "ol.timeline"):
        expect(page.locator(shown)).to_be_visible()
    expect(page.locator("ol.timeline")).to_contain_text("请补充职业")
    assert page.evaluate("document.documentElement.scrollWidth") <= 688
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 1  # one page
