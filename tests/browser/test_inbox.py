"""The inbox in a real Chromium: filters, search and sort (with htmx swapping only the inbox, and without
JavaScript as plain links and a GET form), bulk approval, notifications, and the compact top bar on a phone
(390 x 844: the bar stays under a sixth of the screen; axe finds nothing on the pages)."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from engine.cases import CASES
from tests.browser.axe import assert_accessible
from tests.browser.conftest import PASSWORD, Server, _new_page, login, mark_page, open_menu, same_page
from tests.conftest import new_id_number

VOLUNTEER = {"gender": "female", "phone": "13812345678", "id_number": "11010519491231002X",
             "political_status": "masses", "occupation": "退休教师", "skills": ["tutoring"],
             "available_times": ["weekend"], "grid": "renjia-g1", "address": "1号楼302", "pledge": True}
PARTY = {"phone": "13812345678", "member_type": "on_duty", "workplace": "供电公司", "party_org": "供电公司党支部",
         "community": "renjia", "skills": ["tutoring"], "available_times": ["weekend"], "pledge": True}
PHONE_390 = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def cases(shipped_server: Server) -> dict[str, list[int]]:
    """Volunteer registrations and party member reports waiting for 徽州人家社区's staff."""
    engine, resident = shipped_server.engine, shipped_server.user("resident")
    made: dict[str, list[int]] = {"volunteer": [], "party": []}
    for name in ("欧阳娜娜", "欧阳修", "李白", "杜甫"):
        made["volunteer"].append(engine.start("volunteer_registration", resident,
                                                {**VOLUNTEER, "name": name, "id_number": new_id_number()}).id)
    for name in ("张三", "李四"):
        made["party"].append(engine.start("party_member_reporting", resident, {**PARTY, "name": name}).id)
    return made


def card_ids(page: Any) -> list[int]:
    return [int(x.split("-")[1]) for x in page.eval_on_selector_all(
        "ul.inbox-cards > li", "els => els.map(e => 'c-' + e.querySelector('a').getAttribute('href').split('/').pop())")]


def test_filters_search_and_sort_swap_only_the_inbox(page: Any, shipped_server: Server, cases: dict[str, list[int]]):
    login(page, shipped_server, "staff")
    assert sorted(card_ids(page)) == sorted(cases["volunteer"] + cases["party"])
    expect(page.locator("nav.filters").first).to_contain_text("志愿者注册 (4)")
    mark_page(page)
    page.click("nav.filters a:has-text('在职党员双报到 (2)')")
    page.wait_for_url("**/?process=party_member_reporting")
    expect(page.locator("ul.inbox-cards > li")).to_have_count(2)
    assert same_page(page)  # htmx swapped #inbox; the page itself stayed
    page.click("nav.filters a:has-text('全部流程')")
    expect(page.locator("ul.inbox-cards > li")).to_have_count(6)
    page.fill("#inbox-q", "欧阳")
    page.press("#inbox-q", "Enter")
    page.wait_for_url("**/?q=*")
    expect(page.locator("ul.inbox-cards > li")).to_have_count(2)
    assert sorted(card_ids(page)) == sorted(cases["volunteer"][:2]) and same_page(page)
    page.fill("#inbox-q", "")
    page.select_option("#inbox-sort", "due")
    page.click("form.inbox-search button[type=submit]")
    page.wait_for_url("**sort=due**")
    assert card_ids(page)[:2] == cases["party"]  # the reports have a deadline (5 working days)
    expect(page.locator("ul.inbox-cards > li").first).to_contain_text("期限 2026-12-04")
    page.go_back()
    page.wait_for_url("**/?q=*")
    expect(page.locator("#inbox-q")).to_have_value("欧阳")
    assert_accessible(page, "the filtered inbox")


def test_without_javascript_the_filters_are_links_and_a_get_form(chromium: Any, shipped_server: Server,
                                                                   cases: dict[str, list[int]]):
    context = chromium.new_context(viewport={"width": 1100, "height": 900}, locale="zh-CN", java_script_enabled=False)
    try:
        page = context.new_page()
        login(page, shipped_server, "staff")
        page.click("nav.filters a:has-text('志愿者注册 (4)')")
        page.wait_for_url("**/?process=volunteer_registration")
        assert sorted(card_ids(page)) == sorted(cases["volunteer"])
        page.fill("#inbox-q", "李白")
        page.click("form.inbox-search button[type=submit]")
        page.wait_for_url("**q=*")
        assert card_ids(page) == [cases["volunteer"][2]]
        assert "process=volunteer_registration" in page.url  # the chosen process is kept by the form
    finally:
        context.close()


def test_bulk_approval_ticks_two_and_approves_both(page: Any, shipped_server: Server, cases: dict[str, list[int]]):
    first, second = cases["volunteer"][2], cases["volunteer"][3]
    login(page, shipped_server, "staff")
    page.goto(shipped_server.url + "/?process=volunteer_registration")
    page.click("button[data-pick-all]")  # ticks every case on the page, a second press unticks them
    assert page.eval_on_selector_all("input.pick", "els => els.every(e => e.checked)")
    page.click("button[data-pick-all]")
    assert page.eval_on_selector_all("input.pick", "els => els.every(e => !e.checked)")
    page.check(f"#pick-{first}")
    page.check(f"#pick-{second}")
    page.fill("#bulk-comment", "材料齐全")
    page.click("button[name=transition][value=approve]")
    page.wait_for_url("**/?process=volunteer_registration")
    expect(page.locator("p.flash")).to_contain_text("已办理 2 个事项")
    expect(page.locator(f"#pick-{first}")).to_have_count(0)
    for cid in (first, second):
        doc = shipped_server.engine.store.get(CASES, cid)
        assert doc["state"] == "active"
        assert [(h["action"], h["by"], h["comment"]) for h in doc["history"]][-1] == ("approve", "staff", "材料齐全")
    # the applicant is told, and following the notification opens the case and reads it
    page.context.clear_cookies()
    login(page, shipped_server, "resident")
    expect(page.locator("header nav a[href='/notifications'] .badge")).to_be_visible()
    page.goto(shipped_server.url + "/notifications")
    page.click(f"ul.cases li.unread a[href^='/notifications/'] >> text=#{first}")
    page.wait_for_url(f"**/cases/{first}")
    expect(page.locator("h1")).to_contain_text(f"#{first}")
    page.goto(shipped_server.url + "/notifications")
    expect(page.locator(f"ul.cases li.unread:has-text('#{first}')")).to_have_count(0)


@pytest.fixture
def phone390(chromium: Any, watch: Any) -> Iterator[Any]:
    page = _new_page(chromium, watch, PHONE_390)
    yield page
    page.context.close()
    assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)


def header_height(page: Any) -> float:
    return page.evaluate("document.querySelector('header.top').getBoundingClientRect().height")


def test_on_a_phone_the_top_bar_is_one_row_with_a_menu(phone390: Any, shipped_server: Server,
                                                       cases: dict[str, list[int]]):
    page = phone390
    login(page, shipped_server, "staff")
    height = header_height(page)
    assert height < 844 / 6, f"the top bar takes {height} px of 844"
    expect(page.locator("header nav a[href='/workflows']")).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert_accessible(page, "the inbox on a phone, menu closed")
    open_menu(page)
    expect(page.locator("header nav a[href='/workflows']")).to_be_visible()
    expect(page.locator("header button:has-text('English')")).to_be_visible()
    assert header_height(page) < 844 / 6  # the open menu drops over the page; the bar keeps its height
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert_accessible(page, "the inbox on a phone, menu open")
    page.click("header nav a[href='/workflows']")
    page.wait_for_url("**/workflows")
    assert header_height(page) < 844 / 6
    expect(page.locator("header nav a[href='/workflows']")).to_be_hidden()  # a new page: closed again
    page.goto(shipped_server.url + "/?process=volunteer_registration")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert_accessible(page, "the filtered inbox on a phone")


def test_on_a_wide_screen_the_links_are_in_the_bar(page: Any, shipped_server: Server):
    login(page, shipped_server, "staff")
    expect(page.locator("header nav a[href='/workflows']")).to_be_visible()
    expect(page.locator("header details.menu > summary")).to_be_hidden()
    assert header_height(page) < 120
    assert_accessible(page, "the inbox on a wide screen")


def test_the_accessibility_check_can_fail(page: Any, shipped_server: Server):
    """The axe helper the tests above rely on finds a real mistake (an unlabelled input, an image without alt)."""
    from tests.browser.axe import axe_violations

    page.goto(shipped_server.url + "/login")
    assert axe_violations(page) == []
    page.evaluate("""() => { const i = document.createElement('input'); i.id = 'x-unlabelled';
                              document.querySelector('main').append(i, document.createElement('img')); }""")
    found = {v["id"] for v in axe_violations(page)}
    assert {"label", "image-alt"} <= found, found
