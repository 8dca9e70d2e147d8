"""Several rankings in one round and reopening a closed round (issue 12.4.3), through the pages of the shipped
award selection on TinyDB and PostgreSQL: each award title ranks its own nominees against its own quota; a closed
round is reopened with a reason, its cases coming back to be ranked along the graph's edges."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.readmodel import ROUNDS
from tests.conftest import DURABLE_STORES, act, case, shipped_app, store_location
from tests.test_process_awards import USERS, nominate

ROUND = "2026-Q4"
URL = "/workflows/award_selection/ranking"


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS, store_location(request.param, request, tmp_path))


def flashed(page: str) -> str:
    return " ".join(re.findall(r'class="flash[^"]*"[^>]*>([^<]+)<', page))


def test_each_award_title_is_ranked_on_its_own_with_its_own_quota(app: Any, who: Any, clock: FrozenClock):
    steward = nominate(who, "孙丽", (95, 92, 90))
    heads = [nominate(who, n, t, award_title="building_head") for n, t in (("钱进", (80, 80, 80)), ("张桂兰", (90, 90, 90)),
                                                                            ("李建华", (70, 70, 70)))]
    page = who("district").get(URL).get_data(as_text=True)
    assert "最美楼栋红管家" in page and "最美楼栋长" in page and "名额" in page
    head_part = page.split("最美楼栋长")[1].split("最美楼道长")[0]
    assert "张桂兰" in head_part and "孙丽" not in head_part  # each ranking ranks the nominees for its title only
    assert who("district").post(URL, {"round": ROUND}).status_code == 302
    assert case(app, steward)["data"]["award_level"] == "first"  # alone in its ranking: first prize, not 3rd place
    assert [case(app, c)["state"] for c in heads] == ["on_notice", "on_notice", "not_selected"]  # quota 2
    assert [case(app, c)["data"]["award_level"] for c in heads] == ["winner", "winner", None]
    assert case(app, heads[1])["history"][-1]["comment"] == "最美楼栋长 · 第 1 名 · 当选"
    assert "最美楼栋长 · 当选" in who("district").get(f"/cases/{heads[1]}").get_data(as_text=True)
    (record,) = app.extensions["civicflow"].store.search(ROUNDS)
    assert {(r["case"], r["ranking"]) for r in record["results"]} == {(steward, "steward")} | {(c, "building_head") for c in heads}
    diagram = who("district").get("/workflows/award_selection/diagram").get_data(as_text=True)
    assert 'data-edge="not_selected:ranking:reopen"' in diagram and "重新开启排名" in diagram  # the way back is an edge
    closed = who("district").get(URL).get_data(as_text=True)
    assert "张桂兰" in closed.split("最美楼栋长")[1] and "重新开启排名的理由" in closed

    clock.advance(days=7, minutes=1)
    engine = app.extensions["civicflow"]
    engine.tick()
    figures = engine.figures(engine.users(role="district_evaluator")[0])
    count = {m: sum(r["value"] for r in figures if r["metric"] == m) for m in ("awards_steward", "awards_building_head", "awards_given")}
    assert count == {"awards_steward": 1, "awards_building_head": 2, "awards_given": 3}
    dashboard = who("district").get("/dashboard").get_data(as_text=True)
    assert "表彰最美楼栋红管家" in dashboard and "表彰最美楼栋长" in dashboard
    certificate = who("resident").get(f"/cases/{heads[1]}/certificate").get_data(as_text=True)
    assert "荣获“最美楼栋长”称号" in certificate


def test_a_closed_round_is_reopened_with_a_reason_and_closed_again(app: Any, who: Any):
    first = nominate(who, "孙丽", (95, 92, 90))
    second = nominate(who, "钱进", (80, 80, 80), award_title="volunteer")
    assert who("district").post(URL, {"round": ROUND}).status_code == 302
    assert who("secretary").post(URL, {"round": ROUND, "do": "reopen", "reason": "重新评审"}).status_code == 403
    refused = who("district").post(URL, {"round": ROUND, "do": "reopen", "reason": "  "}, follow_redirects=True)
    assert "请填写重新开启排名的理由" in flashed(refused.get_data(as_text=True))
    assert case(app, first)["state"] == "on_notice"

    reason = "评分表录入有误，重新核分后排名。"
    assert who("district").post(URL, {"round": ROUND, "do": "reopen", "reason": reason}).status_code == 302
    for cid, was in ((first, "on_notice"), (second, "on_notice")):
        data = case(app, cid)
        assert data["state"] == "ranked" and data["data"]["award_level"] is None
        last = data["history"][-1]
        assert (last["action"], last["by"], last["from"], last["to"], last["comment"]) == ("reopen", "district", was, "ranked", reason)
        assert last["label"]["zh"] == "重新开启排名"
        assert {"field": "award_level", "old": "first" if cid == first else "winner", "new": None} in last["changes"]
    page = who("district").get(URL).get_data(as_text=True)
    assert reason in page and "确定本轮排名" in page  # the reopening is on the page, and the round can be closed again
    assert who("district").post(URL, {"round": ROUND}).status_code == 302
    assert case(app, first)["state"] == "on_notice" and case(app, first)["data"]["award_level"] == "first"


def test_a_round_whose_case_moved_on_is_not_reopened(app: Any, who: Any):
    first = nominate(who, "孙丽", (95, 92, 90))
    rest = [nominate(who, n, (t, t, t)) for n, t in (("钱进", 80), ("张桂兰", 85), ("李建华", 70))]
    assert who("district").post(URL, {"round": ROUND}).status_code == 302
    assert case(app, rest[2])["state"] == "not_selected"  # a final state: left only by reopening the round
    assert who("resident2").post(f"/public/{first}", {"reason": "她本季度没有来我家走访过。"}).status_code == 302
    assert case(app, first)["state"] == "objection_review"
    page = who("district").post(URL, {"round": ROUND, "do": "reopen", "reason": "重新评审"}, follow_redirects=True)
    assert f"#{first}" in flashed(page.get_data(as_text=True))  # named: it has moved on since the round closed
    assert [case(app, c)["state"] for c in rest] == ["on_notice", "on_notice", "not_selected"]  # nothing moved
    assert act(who("district"), first, "dismiss", comment="经核实，走访台账有记录和签字。").status_code == 302
    assert who("district").post(URL, {"round": ROUND, "do": "reopen", "reason": "重新评审"}).status_code == 302
    assert [case(app, c)["state"] for c in [first] + rest] == ["ranked"] * 4
