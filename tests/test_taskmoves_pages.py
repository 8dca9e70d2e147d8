"""转交 / 加签 / 退回 / 撤回 on the case page (issue 12.2) of shipped processes, through the Flask test client: the street's
co-signing of 服务群众专项经费 (service_funds) and a resident's 随手拍 report (problem_report). Each form carries CSRF;
someone without the role gets 403 with a clear message, someone who may not see the case 404; a refused form comes
back with what was typed."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from tests.conftest import Browser, act, add_users, case, shipped_app, started
from tests.test_process_funds import REQUEST, USERS, decide
from tests.test_process_problems import REPORT

PROBLEM_USERS = [("grid", "赵敏", ["grid_worker"], "renjia-g1")]
#: a street evaluator who joined after the round opened: the colleague a seat can be handed to
NEWCOMER = ("street4", "罗斌", ["street_evaluator"], "huizhou-jie")


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS + PROBLEM_USERS)


def page(b: Browser, cid: int) -> str:
    return b.get(f"/cases/{cid}").get_data(as_text=True)


def version(b: Browser, cid: int) -> str:
    """The version the case page shows (a page without any form: the stored one, as a reloaded page would send)."""
    found = re.search(r'name="version" value="(\d+)"', page(b, cid))
    return found.group(1) if found else str(case(b.app, cid)["version"])


def move(b: Browser, cid: int, name: str, **data: Any) -> Any:
    data.setdefault("version", version(b, cid))
    return b.post(f"/cases/{cid}/{name}", data, page=f"/cases/{cid}")


def to_cosign(app: Any, who: Any) -> int:
    cid = started(who("staff").post("/start/service_funds", REQUEST))
    assert decide(who("secretary"), cid, "approve", "经居民议事会议定").status_code == 302
    assert case(app, cid)["state"] == "street_cosign"
    return cid


def test_a_street_evaluator_transfers_their_seat_and_the_colleague_signs(app: Any, who: Any):
    cid = to_cosign(app, who)
    add_users(app.extensions["civicflow"].store, [NEWCOMER])
    assert decide(who("street"), cid, "approve").status_code == 302
    html = page(who("street2"), cid)
    box = html[html.index('id="task-moves"'):]
    assert 'action="/cases/%d/transfer"' % cid in box and '<option value="street4">罗斌' in box
    assert '<option value="street3"' not in box  # already has a seat of the round
    before = case(app, cid)["version"]
    # without the form's CSRF token: refused, nothing changes
    assert who("street2").client.post(f"/cases/{cid}/transfer", data={"to": "street4"}).status_code == 400
    response = move(who("street2"), cid, "transfer", to="street4", comment="本周下社区，请罗斌代为会签")
    assert response.status_code == 302
    doc = case(app, cid)
    assert doc["version"] == before + 1 and doc["state"] == "street_cosign"
    assert f"#{cid}" in who("street4").get("/").get_data(as_text=True)      # in the colleague's inbox now
    assert f"#{cid}" not in who("street2").get("/").get_data(as_text=True)
    assert "approve" in page(who("street4"), cid) and 'value="approve"' in page(who("street4"), cid)
    assert decide(who("street4"), cid, "approve", "同意").status_code == 302
    html = page(who("staff"), cid)
    approvals = html[html.index('id="approval"'):html.index('id="task-moves"') if 'id="task-moves"' in html else None]
    assert "由 何平 转交给 罗斌" in approvals
    assert len(re.findall(r'class="approver approver-approve"', approvals)) == 2
    assert len(re.findall(r'class="approver approver-pending"', approvals)) == 1   # street3 still to act
    history = html[html.index('id="history-h"'):]
    assert "转交给 罗斌" in history and "本周下社区，请罗斌代为会签" in history


def test_moves_are_refused_to_those_without_the_role_or_the_case(app: Any, who: Any):
    cid = to_cosign(app, who)
    before = case(app, cid)["version"]
    refused = move(who("staff"), cid, "transfer", to="street2")  # the applicant holds no seat
    assert refused.status_code == 403 and "您没有持有此事项的待办，不能转交。" in refused.get_data(as_text=True)
    refused = move(who("district"), cid, "add-approver", who="secretary_b", position="before", version=str(before))
    assert refused.status_code == 404  # may not see the case at all
    refused = move(who("staff"), cid, "send-back", target="community_review", comment="申请人想退回")
    assert refused.status_code == 403 and "您不能办理此步骤，不能退回。" in refused.get_data(as_text=True)
    refused = move(who("street"), cid, "withdraw")  # service_funds declares no withdraw (its steps have their own)
    assert refused.status_code == 409 and "此步骤不能“撤回”" in refused.get_data(as_text=True)
    assert 'id="task-moves"' not in page(who("staff"), cid) or "转交" not in page(who("staff"), cid).split('id="task-moves"')[1].split("</section>")[0]
    assert case(app, cid)["version"] == before


def test_a_transfer_to_someone_without_the_role_keeps_what_was_typed(app: Any, who: Any):
    cid = to_cosign(app, who)
    add_users(app.extensions["civicflow"].store, [NEWCOMER])
    response = move(who("street"), cid, "transfer", to="secretary_b", comment="请代为会签")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "此人没有相同的角色或管辖范围" in html
    assert 'aria-invalid="true"' in html and "请代为会签</textarea>" in html and '<details class="move" id="move-transfer" open>' in html


def test_add_approver_before_me_on_the_page(app: Any, who: Any):
    cid = to_cosign(app, who)
    assert move(who("street"), cid, "add-approver", who="secretary_b", position="before").status_code == 302
    html = page(who("staff"), cid)
    assert "由 郑军 前加签（先于其审批）" in html and "加签 钱刚（先于我审批）" in html
    assert 'value="approve"' not in page(who("street"), cid)      # street waits for the added one
    assert decide(who("secretary_b"), cid, "approve", "同意").status_code == 302
    assert 'value="approve"' in page(who("street"), cid)          # and it came back to street
    refused = move(who("street"), cid, "add-approver", who="street2", position="after")
    assert refused.status_code == 422 and "此人不能加为审批人" in refused.get_data(as_text=True)


def test_the_street_sends_it_back_to_the_secretary_check_with_a_reason(app: Any, who: Any):
    cid = to_cosign(app, who)
    html = page(who("street2"), cid)
    assert '<option value="community_review">社区书记审核</option>' in html
    refused = move(who("street2"), cid, "send-back", target="community_review", comment=" ")
    assert refused.status_code == 422 and "请写明退回的理由" in refused.get_data(as_text=True)
    assert case(app, cid)["state"] == "street_cosign"
    assert move(who("street2"), cid, "send-back", target="community_review",
                comment="预算缺少明细").status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "community_review" and doc["approvals"]["community_review"]["round"] == 2
    assert doc["history"][-1]["action"] == "return" and doc["history"][-1]["comment"] == "预算缺少明细"
    assert "预算缺少明细" in page(who("secretary"), cid)
    # the diagram names it compactly on the street's box
    assert "↩ 可退回：社区书记审核" in page(who("staff"), cid)


def test_a_resident_withdraws_a_report_nobody_has_verified(app: Any, who: Any):
    cid = started(who("resident").post("/start/problem_report", REPORT))
    html = page(who("resident"), cid)
    assert 'action="/cases/%d/withdraw"' % cid in html and "撤回后，事项状态为“已撤回”" in html
    assert 'action="/cases/%d/withdraw"' % cid not in page(who("grid"), cid)
    assert move(who("resident"), cid, "withdraw", comment="已自行清理").status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "withdrawn" and doc["history"][-1]["label"]["zh"] == "撤回"
    assert f"#{cid}" not in who("grid").get("/").get_data(as_text=True)


def test_withdrawing_after_the_grid_worker_acted_says_who(app: Any, who: Any):
    cid = started(who("resident").post("/start/problem_report", REPORT))
    assert act(who("grid"), cid, "handle").status_code == 302
    html = page(who("resident"), cid)
    assert "赵敏 已办理过此事项（核实属实·自行处置），不能再撤回。" in html
    assert 'action="/cases/%d/withdraw"' % cid not in html
    assert move(who("grid"), cid, "withdraw").status_code == 403  # only the initiator withdraws
    refused = move(who("resident"), cid, "withdraw")
    assert refused.status_code == 409 and "赵敏 已办理过此事项" in refused.get_data(as_text=True)
    assert case(app, cid)["state"] == "in_progress"
