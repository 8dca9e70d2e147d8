"""A 会签 step with three approvers in a real Chromium (issue 12.1): the applicant starts a 服务群众专项经费 request,
a community secretary approves, and each of the street's three evaluators signs on the case page, on a phone;
the page shows who has acted and who is still to act, a rejection without a reason is refused with the text kept."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (Server, login, logout, make_app, no_injected_markup, no_sideways_scroll, serve,
                                    start_funds_request)
from tests.conftest import ROOT, add_users

STREET = [("street", "郑军", ["street_evaluator"], "huizhou-jie"),
          ("street2", "何平", ["street_evaluator"], "huizhou-jie"),
          ("street3", "施琳", ["street_evaluator"], "huizhou-jie")]


@pytest.fixture(scope="module")
def funds_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = make_app(tmp_path_factory.mktemp("funds"), ROOT)
    add_users(app.extensions["civicflow"].store, STREET)
    yield from serve(app)


def approval(page: Any) -> Any:
    return page.locator("section#approval")


def test_three_street_evaluators_cosign_on_a_phone(phone: Any, funds_server: Server):
    page = phone
    case_url = start_funds_request(page, funds_server)
    expect(approval(page)).to_contain_text("社区书记审核")
    expect(approval(page).locator("button[value=approve]")).to_have_count(0)  # the applicant does not sign
    logout(page)

    login(page, funds_server, "secretary")
    page.goto(case_url)
    approval(page).locator("textarea[name=comment]").fill("经居民议事会议定")
    approval(page).locator("button[value=approve]").click()
    expect(page.locator("p.meta .state").first).to_have_text("街道会签")
    logout(page)

    for n, (username, name, _, _) in enumerate(STREET):
        login(page, funds_server, username)
        expect(page.locator("main")).to_contain_text("楼道照明改造")  # in the inbox of each one still to act
        page.click("main a:has-text('楼道照明改造')")
        box = approval(page)
        expect(box.locator("h2")).to_have_text("街道会签")
        expect(box.locator("li.approver-pending")).to_have_count(3 - n)     # who is still to act
        expect(box.locator("li.approver-approve")).to_have_count(n)         # who has acted
        no_sideways_scroll(page)
        no_injected_markup(page)
        if n == 1:  # a rejection needs a reason: refused, and what was typed stays
            box.locator("textarea[name=comment]").fill("   ")
            box.locator("button[value=reject]").click()
            expect(approval(page).locator("p.error")).to_have_text("不同意时请写明理由")
            expect(approval(page).locator("textarea[name=comment]")).to_have_attribute("aria-invalid", "true")
            approval(page).locator("textarea[name=comment]").fill("同意，注意保留票据")
        approval(page).locator("button[value=approve]").click()
        expect(page.locator(".flash, [role=status]").first).to_contain_text("您已同意")
        mine = approval(page).locator("li.approver-approve", has_text=name)
        expect(mine).to_contain_text("2026-11-27 09:00")
        if n == 1:
            expect(mine).to_contain_text("同意，注意保留票据")
        if n < 2:
            expect(approval(page).locator("button[value=approve]")).to_have_count(0)  # signed once, no second time
        logout(page)

    login(page, funds_server, "staff")
    page.goto(case_url)
    expect(page.locator("p.meta .state").first).to_have_text("实施中")
    box = approval(page)
    expect(box.locator(".state")).to_have_text("已通过")
    expect(box.locator("li.approver-approve")).to_have_count(3)
    expect(page.locator("ol.timeline")).to_contain_text("街道会签通过")
    expect(page.locator("a.btn", has_text="结算并公开")).to_be_visible()
    no_sideways_scroll(page)
    page.screenshot(path=str(Path(funds_server.app.config["UPLOADS"]).parent / "approval.png"), full_page=True)
