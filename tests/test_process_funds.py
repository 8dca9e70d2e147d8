"""服务群众专项经费 (service_funds, issue 12.1): a community secretary's check (或签) and the street's co-signing
(会签) through the pages: who is asked, who has acted, refusals, a rejection with its reason, and publication."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from tests.conftest import DURABLE_STORES, Browser, act, case, shipped_app, started, store_location

USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("secretary_b", "钱刚", ["community_secretary"], "renjia"),
    ("secretary2", "孔亮", ["community_secretary"], "wenfeng"),
    ("street", "郑军", ["street_evaluator"], "huizhou-jie"),
    ("street2", "何平", ["street_evaluator"], "huizhou-jie"),
    ("street3", "施琳", ["street_evaluator"], "huizhou-jie"),
    ("district", "黄蕾", ["district_evaluator"], "huizhou"),
]
REQUEST = {"project": "楼道照明改造", "community": "renjia", "amount": "8600",
           "purpose": "为1号楼、2号楼更换声控灯共48盏。"}


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS, store_location(request.param, request, tmp_path))


def decide(b: Browser, cid: int, decision: str, comment: str = "") -> Any:
    """Approve or reject on the case page, with the version the page shows."""
    page = b.get(f"/cases/{cid}").get_data(as_text=True)
    version = re.search(r'action="/cases/\d+/approve".*?name="version" value="(\d+)"', page, re.S)
    assert version, "no approval form on the case page"
    return b.post(f"/cases/{cid}/approve", {"decision": decision, "comment": comment, "version": version.group(1)},
                  page=f"/cases/{cid}")


def inbox(b: Browser) -> str:
    return b.get("/").get_data(as_text=True)


def test_secretary_check_then_every_street_evaluator_signs(app: Any, who: Any):
    cid = started(who("staff").post("/start/service_funds", REQUEST))
    assert case(app, cid)["state"] == "community_review"
    for name in ("secretary", "secretary_b"):  # 或签: either secretary of the community
        assert f"#{cid}" in inbox(who(name))
    assert f"#{cid}" not in inbox(who("secretary2"))  # another community's secretary
    assert who("secretary2").get(f"/cases/{cid}").status_code == 404
    assert f"#{cid}" not in inbox(who("street"))  # not the street's turn yet

    assert decide(who("secretary_b"), cid, "approve", "经居民议事会议定").status_code == 302
    assert case(app, cid)["state"] == "street_cosign"
    assert f"#{cid}" not in inbox(who("secretary"))  # decided by the other secretary

    page = who("street").get(f"/cases/{cid}").get_data(as_text=True)
    assert "街道会签" in page and "会签" in page
    assert page.count("待审批") >= 3  # 郑军, 何平, 施琳 still to act
    assert decide(who("street"), cid, "approve", "同意").status_code == 302
    page = who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    section = page[page.index('id="approval"'):page.index("</section>", page.index('id="approval"'))]
    assert "郑军" in section and "同意" in section and "2026-11-27 09:00" in section
    assert section.count("待审批") == 2 and 'action="/cases/' not in section  # the applicant cannot sign
    assert f"#{cid}" not in inbox(who("street")) and f"#{cid}" in inbox(who("street2"))

    again = decide(who("street2"), cid, "approve")
    assert again.status_code == 302
    refused = who("street2").post(f"/cases/{cid}/approve", {"decision": "approve", "comment": ""}, page=f"/cases/{cid}")
    assert refused.status_code == 403 and "不能重复审批" in refused.get_data(as_text=True)
    outsider = who("district").post(f"/cases/{cid}/approve", {"decision": "approve"}, page="/")
    assert outsider.status_code == 404  # not an approver, and not someone who sees the case
    assert decide(who("street3"), cid, "approve").status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "implementing"
    assert [h["action"] for h in doc["history"]] == ["start", "approve", "approved", "approve", "approve", "approve",
                                                    "approved"]
    page = who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    assert "结算并公开" in page and "街道会签通过" in page  # the outcome is in the history

    response = act(who("staff"), cid, "settle", spent="8240", settlement_note="实际更换46盏，剩余经费退回。")
    assert response.status_code == 302 and case(app, cid)["state"] == "settled"
    public = Browser(app).get(f"/public/{cid}").get_data(as_text=True)
    assert "楼道照明改造" in public and "8240" in public


def test_one_street_rejection_returns_it_with_the_reason_kept(app: Any, who: Any):
    cid = started(who("staff").post("/start/service_funds", REQUEST))
    decide(who("secretary"), cid, "approve")
    decide(who("street"), cid, "approve")
    missing = decide(who("street2"), cid, "reject", "   ")
    text = missing.get_data(as_text=True)
    assert missing.status_code == 422 and "不同意时请写明理由" in text and 'aria-invalid="true"' in text
    assert case(app, cid)["state"] == "street_cosign"
    typed = decide(who("street2"), cid, "reject", "预算偏高，请补充三家报价")
    assert typed.status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "returned" and doc["history"][-1]["action"] == "rejected"
    page = who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    assert "预算偏高，请补充三家报价" in page and "无需审批" in page  # 施琳 was not needed any more
    assert f"#{cid}" not in inbox(who("street3"))
    assert f"#{cid}" in inbox(who("staff"))  # back to the applicant


def test_the_form_keeps_what_was_typed_and_a_stale_page_is_told(app: Any, who: Any):
    cid = started(who("staff").post("/start/service_funds", REQUEST))
    decide(who("secretary"), cid, "approve")
    page = who("street").get(f"/cases/{cid}").get_data(as_text=True)
    old = re.search(r'action="/cases/\d+/approve".*?name="version" value="(\d+)"', page, re.S).group(1)
    decide(who("street2"), cid, "approve")  # someone else signs meanwhile: a new version
    stale = who("street").post(f"/cases/{cid}/approve", {"decision": "approve", "comment": "我的意见", "version": old},
                               page=f"/cases/{cid}")
    assert stale.status_code == 409 and "我的意见" in stale.get_data(as_text=True)


def test_english_page_names_the_mode_and_statuses(app: Any, who: Any):
    cid = started(who("staff").post("/start/service_funds", REQUEST))
    english = Browser(app).login("secretary")
    english.post("/lang/en", {}, page="/")
    page = english.get(f"/cases/{cid}").get_data(as_text=True)
    assert "Community secretary check" in page and "Any one approves" in page and "To act now" in page
    assert ">Approve<" in page and ">Reject<" in page


def test_the_applicant_withdraws_during_the_cosigning(app: Any, who: Any):
    cid = started(who("staff").post("/start/service_funds", REQUEST))
    decide(who("secretary"), cid, "approve")
    decide(who("street"), cid, "approve")
    assert act(who("staff"), cid, "withdraw", comment="项目改由共建单位出资").status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "withdrawn" and doc["approvals"]["street_cosign"]["status"] == "closed"
    assert f"#{cid}" not in inbox(who("street2"))
    page = who("street").get(f"/cases/{cid}").get_data(as_text=True)  # who signed still sees it
    assert "未决即结束" in page and "无需审批" in page
