"""转交 and 撤回 in a real Chromium on a phone (issue 12.2): the street's 会签 of a 服务群众专项经费 request with three
evaluators — one approves, one transfers their seat to a colleague who then approves, the third approves — with the
page showing who has acted and who is still to act, and the history lines; and a 随手拍 report its resident withdraws
before anyone verified it. axe checks the case page with the moves box open."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.axe import assert_accessible
from tests.browser.conftest import (Server, login, logout, make_app, no_injected_markup, no_sideways_scroll, serve,
                                    start_funds_request)
from tests.conftest import ROOT, add_users

STREET = [("street", "郑军", ["street_evaluator"], "huizhou-jie"),
          ("street2", "何平", ["street_evaluator"], "huizhou-jie"),
          ("street3", "施琳", ["street_evaluator"], "huizhou-jie")]
#: joins the street after the round opened (a role's holders are worked out when the round opens): the colleague
NEWCOMER = ("street4", "罗斌", ["street_evaluator"], "huizhou-jie")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = make_app(tmp_path_factory.mktemp("taskmoves"), ROOT)
    add_users(app.extensions["civicflow"].store, STREET)
    yield from serve(app)


def approval(page: Any) -> Any:
    return page.locator("section#approval")


def moves(page: Any) -> Any:
    return page.locator("section#task-moves")


def open_case(page: Any, server: Server, username: str, title: str) -> None:
    login(page, server, username)
    expect(page.locator("main")).to_contain_text(title)  # in their to-do list
    page.click(f"main a:has-text('{title}')")
    page.wait_for_url("**/cases/*")


def test_cosign_with_a_transfer_to_a_colleague(phone: Any, server: Server):
    page = phone
    case_url = start_funds_request(page, server, project="小区路灯维修", amount="5200", purpose="维修小区主干道路灯12盏。")
    logout(page)

    login(page, server, "secretary")
    page.goto(case_url)
    approval(page).locator("textarea[name=comment]").fill("同意")
    approval(page).locator("button[value=approve]").click()
    expect(page.locator("p.meta .state").first).to_have_text("街道会签")
    logout(page)
    add_users(server.engine.store, [NEWCOMER])

    # 1. one evaluator approves
    open_case(page, server, "street", "小区路灯维修")
    approval(page).locator("button[value=approve]").click()
    expect(page.locator(".flash, [role=status]").first).to_contain_text("您已同意")
    logout(page)

    # 2. one transfers their seat to a colleague, with a comment
    open_case(page, server, "street2", "小区路灯维修")
    expect(approval(page).locator("li.approver-approve")).to_have_count(1)
    expect(approval(page).locator("li.approver-pending")).to_have_count(2)
    moves(page).locator("#move-transfer > summary").click()
    page.select_option("#transfer-to", "street4")
    page.fill("#transfer-comment", "本周下社区，请罗斌代为会签")
    no_sideways_scroll(page)
    assert_accessible(page, "the case page with the transfer form open")
    moves(page).screenshot(path=str(Path(server.app.config["UPLOADS"]).parent / "transfer.png"))
    moves(page).locator("#move-transfer button[type=submit]").click()
    expect(page.locator(".flash, [role=status]").first).to_contain_text("已转交：转交给 罗斌")
    expect(approval(page).locator("button[value=approve]")).to_have_count(0)   # no longer theirs
    expect(approval(page)).to_contain_text("由 何平 转交给 罗斌")
    logout(page)

    # the colleague finds it in their to-do list and approves
    open_case(page, server, "street4", "小区路灯维修")
    box = approval(page)
    expect(box.locator("li.approver-pending", has_text="罗斌")).to_have_count(1)
    box.locator("textarea[name=comment]").fill("同意，已核对预算")
    box.locator("button[value=approve]").click()
    expect(approval(page).locator("li.approver-approve")).to_have_count(2)
    expect(approval(page).locator("li.approver-pending")).to_have_count(1)     # who is still to act: 施琳
    expect(approval(page).locator("li.approver-pending")).to_contain_text("施琳")
    history = page.locator("ol.timeline")
    expect(history).to_contain_text("转交给 罗斌")
    expect(history).to_contain_text("本周下社区，请罗斌代为会签")
    no_injected_markup(page)
    assert_accessible(page, "the case page after the transfer")
    logout(page)

    # 3. the third approves: the step is decided
    open_case(page, server, "street3", "小区路灯维修")
    approval(page).locator("button[value=approve]").click()
    expect(page.locator("p.meta .state").first).to_have_text("实施中")
    expect(approval(page).locator("li.approver-approve")).to_have_count(3)
    expect(page.locator("ol.timeline")).to_contain_text("街道会签通过")
    no_sideways_scroll(page)
    page.screenshot(path=str(Path(server.app.config["UPLOADS"]).parent / "taskmoves.png"), full_page=True)


def test_a_resident_withdraws_a_report_nobody_verified(phone: Any, server: Server):
    page = phone
    login(page, server, "resident")
    page.goto(server.url + "/start/problem_report")
    page.select_option("#category", "hazard")
    page.fill("#description", "3号楼楼道灯坏了，晚上看不见台阶")
    page.fill("#address", "3号楼1单元")
    page.select_option("#grid", "renjia-g1")
    page.fill("#reporter_phone", "13812345678")
    page.click("form .actions button.primary")
    page.wait_for_url("**/cases/*")
    expect(moves(page)).to_contain_text("撤回我的事项")
    moves(page).locator("#move-withdraw > summary").click()
    expect(moves(page)).to_contain_text("尚无他人办理。撤回后，事项状态为“已撤回”。")
    assert_accessible(page, "the case page with the withdraw form open")
    page.fill("#withdraw-comment", "物业已经修好了")
    moves(page).locator("#move-withdraw button[type=submit]").click()
    expect(page.locator(".flash, [role=status]").first).to_contain_text("已撤回。事项现为“已撤回”。")
    expect(page.locator("p.meta .state").first).to_have_text("已撤回")
    history = page.locator("ol.timeline")
    expect(history.locator("li").first).to_contain_text("撤回")
    expect(history.locator("li").first).to_contain_text("物业已经修好了")
    expect(moves(page)).to_have_count(0)  # a finished case: nothing left to move
    no_sideways_scroll(page)
    logout(page)
