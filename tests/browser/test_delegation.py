"""委托代理 in a real Chromium on a phone (issue 12.2): a community secretary delegates their tasks on 我的账号 to the
secretary of another community, who finds the task in the inbox marked 代, approves it on the case page, and the
history shows who acted for whom. The account page passes axe and does not scroll sideways at 360 px."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.axe import assert_accessible
from tests.browser.conftest import (Server, login, logout, make_app, no_injected_markup, no_sideways_scroll, serve,
                                    start_funds_request)
from tests.conftest import ROOT, add_users


@pytest.fixture(scope="module")
def funds_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = make_app(tmp_path_factory.mktemp("delegation"), ROOT)
    add_users(app.extensions["civicflow"].store, [("secretary2", "孔亮", ["community_secretary"], "wenfeng"),
                                                  ("street", "郑军", ["street_evaluator"], "huizhou-jie")])
    yield from serve(app)


def test_a_delegate_approves_the_delegators_task_on_a_phone(phone: Any, funds_server: Server):
    page = phone
    case_url = start_funds_request(page, funds_server)
    logout(page)

    login(page, funds_server, "secretary")
    page.goto(funds_server.url + "/account")
    box = page.locator("section#delegation")
    expect(box.locator("h2")).to_have_text("委托代理")
    box.locator("#delegate-q").fill("孔")
    box.locator("form[role=search] button").click()
    box = page.locator("section#delegation")
    expect(box.locator("input[name=delegate][value=secretary2]")).to_be_checked()
    box.locator("#delegation-from").fill("2026-11-27")
    box.locator("#delegation-to").fill("2026-11-29")
    no_sideways_scroll(page)
    assert_accessible(page, "the account page with a colleague found")
    box.locator("button:has-text('委托我的待办')").click()
    expect(page.locator(".flash").first).to_contain_text("您的待办已委托给 孔亮")
    expect(page.locator("section#delegation li")).to_contain_text("生效中")
    no_sideways_scroll(page)
    no_injected_markup(page)
    assert_accessible(page, "the account page with a delegation")
    logout(page)

    login(page, funds_server, "secretary2")
    card = page.locator("ul.inbox-cards li", has_text="楼道照明改造")
    expect(card).to_contain_text("代 周伟")
    no_sideways_scroll(page)
    assert_accessible(page, "the delegate's inbox")
    card.locator("a").click()
    page.wait_for_url(case_url)
    expect(page.locator("section#followup")).to_contain_text("您受 周伟 委托办理此事项")
    no_sideways_scroll(page)
    assert_accessible(page, "the case page of a delegated task")
    approval = page.locator("section#approval")
    approval.locator("textarea[name=comment]").fill("代周伟审核通过")
    approval.locator("button[value=approve]").click()
    expect(page.locator(".flash").first).to_contain_text("您已同意")
    logout(page)

    login(page, funds_server, "staff")
    page.goto(case_url)
    expect(page.locator("p.meta .state").first).to_have_text("街道会签")
    expect(page.locator("ol.timeline")).to_contain_text("孔亮（代 周伟）")
    # the applicant urges the street and copies the grid worker in, on the phone
    page.locator("section#followup button:has-text('催办')").click()
    expect(page.locator(".flash").first).to_contain_text("已催办")
    expect(page.locator("#urge-next")).to_contain_text("后可再次催办")
    page.locator("#cc-q").fill("赵")
    page.locator("section#followup form[role=search] button").click()
    page.locator("section#followup input[name=cc][value=grid]").check()
    no_sideways_scroll(page)
    assert_accessible(page, "the case page with the cc picker")
    page.locator("section#followup button:has-text('抄送')").last.click()
    expect(page.locator(".flash").first).to_contain_text("已抄送：赵敏")
    expect(page.locator("ol.timeline")).to_contain_text("抄送：赵敏")
