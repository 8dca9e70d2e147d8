"""Governance mechanics through the pages, as people use them (Flask test client, real TinyDB file, CSRF on)."""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

from engine import ledger
from engine.cases import CASES
from engine.clock import FrozenClock
from engine.web import create_app
from tests.conftest import DURABLE_STORES, Browser, GOVERNANCE_USERS, act, add_users, governance_dir, started, store_location


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock("2026-11-27T09:00:00")


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": store_location(request.param, request, tmp_path),
                      "UPLOADS": str(tmp_path / "up"), "DEFINITIONS": str(governance_dir(tmp_path)), "CLOCK": clock})
    add_users(app.extensions["civicflow"].store, GOVERNANCE_USERS)
    yield app
    app.extensions["civicflow"].store.close()


def state(app: Any, cid: int) -> str:
    return app.extensions["civicflow"].store.get(CASES, cid)["state"]


def test_appraisal_rating_scoring_notice_and_publication(app: Any, who: Any, clock: FrozenClock):
    cid = started(who("staff").post("/start/appraisal", {"person": "陈静", "unit": "renjia", "summary": "走访 520 户"}))
    resident = who("r1")
    assert f"#{cid}" in resident.get("/").get_data(as_text=True)  # waiting for my rating
    assert "参加测评" in resident.get(f"/cases/{cid}").get_data(as_text=True)
    bad = resident.post(f"/cases/{cid}/contribute", {"stars": "7"})
    assert bad.status_code == 422 and "不能大于 5" in bad.get_data(as_text=True)
    for name, stars in (("r1", "5"), ("r2", "4"), ("r3", "4")):
        assert who(name).post(f"/cases/{cid}/contribute", {"stars": stars}).status_code == 302
    page = who("secretary").get(f"/cases/{cid}").get_data(as_text=True)
    assert "3 / 3" in page or "3 of 3" in page or "已完成 3" in page
    assert "居民1" in page  # the secretary may see who rated what
    assert "居民1" not in who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    assert act(who("secretary"), cid, "close_rating").status_code == 302
    for name in ("street", "street2", "street3"):
        assert who(name).post(f"/cases/{cid}/contribute", {"service": "80", "attitude": "80", "results": "80"}).status_code == 302
    assert act(who("street"), cid, "to_notice").status_code == 302

    public = Browser(app)  # nobody logged in
    listing = public.get("/public").get_data(as_text=True)
    assert "陈静" in listing and "2026-12-02" in listing
    detail = public.get(f"/public/{cid}").get_data(as_text=True)
    assert "80" in detail and "登录后提出异议" in detail
    clock.advance(days=5, minutes=1)
    app.extensions["civicflow"].tick()
    assert state(app, cid) == "published"
    assert "考核结果已公布" in public.get("/public").get_data(as_text=True)
    assert ledger.verify(app.extensions["civicflow"].store) == []


def test_objection_from_the_public_page(app: Any, who: Any):
    store = app.extensions["civicflow"].store
    cid = started(who("staff").post("/start/appraisal", {"person": "陈静", "unit": "renjia", "summary": "述职"}))
    for name in ("r1", "r2", "r3"):
        who(name).post(f"/cases/{cid}/contribute", {"stars": "4"})
    act(who("secretary"), cid, "close_rating")
    for name in ("street", "street2", "street3"):
        who(name).post(f"/cases/{cid}/contribute", {"service": "70", "attitude": "70", "results": "70"})
    act(who("street"), cid, "to_notice")
    anonymous = Browser(app)
    response = anonymous.post(f"/public/{cid}", {"reason": "不实"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    empty = who("r4").post(f"/public/{cid}", {"reason": ""})
    assert empty.status_code == 422 and "请写明异议理由" in empty.get_data(as_text=True)
    assert who("r4").post(f"/public/{cid}", {"reason": "测评没有通知到 2 号楼"}).status_code == 302
    assert state(app, cid) == "objection_review"
    assert who("secretary").get("/notifications").get_data(as_text=True).count("收到异议") == 1
    assert act(who("secretary"), cid, "uphold", comment="属实，重新测评").status_code == 302
    assert store.get(CASES, cid)["objections"][0]["status"] == "upheld"
    assert cid not in [c for c in re.findall(r"/public/(\d+)", Browser(app).get("/public").get_data(as_text=True))]


def nominate(b: Browser, evaluators: list[Browser], name: str, service: int, other: int) -> int:
    cid = started(b.post("/start/award", {"nominee": name, "unit": "renjia", "deeds": "组织志愿服务"}))
    for e in evaluators:
        response = e.post(f"/cases/{cid}/contribute", {"service": str(service), "attitude": str(other), "results": str(other)})
        assert response.status_code == 302
    assert act(evaluators[0], cid, "done_scoring").status_code == 302
    return cid


def test_ranking_page_shows_a_tie_and_refuses_to_close(app: Any, who: Any):
    evaluators = [who("district"), who("district2")]
    ids = [nominate(who("secretary"), evaluators, n, s, o)
           for n, s, o in (("甲", 90, 90), ("乙", 80, 80), ("丙", 70, 70), ("丁", 70, 70))]
    page = who("district").get("/workflows/award/ranking").get_data(as_text=True)
    assert "2026-Q4" in page and "并列" in page and f"#{ids[2]}" in page
    assert who("secretary").get("/workflows/award/ranking").status_code == 403
    response = who("district").post("/workflows/award/ranking", {"round": "2026-Q4"})
    assert response.status_code == 302
    assert "名额边界出现并列" in who("district").get(response.headers["Location"]).get_data(as_text=True)
    assert [state(app, i) for i in ids] == ["ranked"] * 4


def test_ranking_closes_and_moves_cases(app: Any, who: Any):
    evaluators = [who("district"), who("district2")]
    ids = [nominate(who("secretary"), evaluators, n, s, o) for n, s, o in (("甲", 90, 90), ("乙", 80, 80), ("丙", 60, 60), ("丁", 50, 50))]
    who("district").post("/workflows/award/ranking", {"round": "2026-Q4"})
    assert [state(app, i) for i in ids] == ["selected", "selected", "selected", "not_selected"]
    page = who("district").get("/workflows/award/ranking?round=2026-Q4").get_data(as_text=True)
    assert "本轮已于" in page or "closed" in page


def test_claims_from_several_browsers_exactly_one_wins(app: Any, who: Any):
    cid = started(who("grid").post("/start/wish", {"wish_title": "为独居老人修门锁", "grid": "renjia-g1"}))
    claimers = [Browser(app).login("party"), Browser(app).login("party2"), Browser(app).login("party"),
                Browser(app).login("party2")]
    tokens = [b.token(f"/cases/{cid}") for b in claimers]
    barrier = threading.Barrier(len(claimers))
    codes: list[int] = []

    def claim(b: Browser, token: str) -> None:
        barrier.wait()
        codes.append(b.client.post(f"/cases/{cid}/do/claim", data={"csrf_token": token, "version": "1"}).status_code)

    threads = [threading.Thread(target=claim, args=bt) for bt in zip(claimers, tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [302, 409, 409, 409]
    assert state(app, cid) == "claimed"
    assert who("party_wf").get(f"/cases/{cid}").status_code == 404


def test_dispatch_picker_decline_accept_rate_and_points(app: Any, who: Any):
    cid = started(who("r1").post("/start/service_order", {"service": "上门理发", "grid": "renjia-g1"}))
    page = who("staff").get(f"/cases/{cid}/do/dispatch").get_data(as_text=True)
    assert 'value="volunteer"' in page and 'value="volunteer2"' in page and 'value="volunteer_wf"' not in page
    assert act(who("staff"), cid, "dispatch").status_code == 422  # nobody picked
    response = act(who("staff"), cid, "dispatch", assignees="volunteer_wf")
    assert response.status_code == 422 and "所选人员不可分配" in response.get_data(as_text=True)
    assert act(who("staff"), cid, "dispatch", assignees="volunteer").status_code == 302
    assert f"#{cid}" in who("volunteer").get("/").get_data(as_text=True)
    assert f"#{cid}" not in who("volunteer2").get("/").get_data(as_text=True)
    assert act(who("volunteer"), cid, "decline", comment="在外地").status_code == 302
    act(who("staff"), cid, "dispatch", assignees="volunteer2")
    act(who("volunteer2"), cid, "accept")
    assert act(who("volunteer2"), cid, "finish", hours="2").status_code == 302
    assert act(who("r1"), cid, "rate", order_stars="5").status_code == 302
    points = who("volunteer2").get("/points").get_data(as_text=True)
    assert "20" in points and "志愿服务" in points
    overview = who("staff").get("/points/overview").get_data(as_text=True)
    assert "杨帆" in overview
    assert who("r1").get("/points/overview").status_code == 403


def test_redemption_refused_when_points_are_short(app: Any, who: Any):
    cid = started(who("volunteer").post("/start/redeem", {"reward": "rice", "grid": "renjia-g1"}))
    response = act(who("volunteer"), cid, "redeem")
    assert response.status_code == 409 and "积分不足" in response.get_data(as_text=True)
    assert state(app, cid) == "requested"


def test_outside_the_org_unit_every_page_refuses(app: Any, who: Any):
    cid = started(who("staff").post("/start/appraisal", {"person": "陈静", "unit": "renjia", "summary": "述职"}))
    order = started(who("r1").post("/start/service_order", {"service": "修水管", "grid": "renjia-g1"}))
    outsider = who("staff2")
    for url in (f"/cases/{cid}", f"/cases/{order}", f"/cases/{cid}/contribute", f"/cases/{order}/do/dispatch"):
        assert outsider.get(url).status_code == 404, url
    for url in ("/", "/workflows/appraisal", "/workflows/service_order"):
        page = outsider.get(url).get_data(as_text=True)
        assert f"#{cid}" not in page and f"#{order}" not in page, url
    assert outsider.post(f"/cases/{order}/do/dispatch", {"version": "1", "assignees": "volunteer_wf"},
                         page="/").status_code == 404
    assert who("r_wf").post(f"/cases/{cid}/contribute", {"stars": "1"}, page="/").status_code == 404
    assert state(app, order) == "ordered"


def test_timer_fires_from_the_cli_tick(app: Any, who: Any, clock: FrozenClock):
    cid = started(who("grid").post("/start/approval", {"wish_title": "楼道装灯", "grid": "renjia-g1"}))
    clock.advance(days=3)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["tick"])
    assert f"case #{cid}: after -> expire" in result.output and "1 timer(s) fired" in result.output
    assert state(app, cid) == "expired"
    assert "0 timer(s) fired" in runner.invoke(args=["tick"]).output
    assert "every link intact" in runner.invoke(args=["verify"]).output


def test_the_web_app_runs_due_timers_in_the_background(tmp_path: Path, clock: FrozenClock):
    import time

    app = create_app({"SECRET_KEY": "t", "STORE": str(tmp_path / "bg.json"), "UPLOADS": str(tmp_path / "up"),
                      "DEFINITIONS": str(governance_dir(tmp_path)), "CLOCK": clock, "TICK_SECONDS": 0.05})
    engine = app.extensions["civicflow"]
    try:
        add_users(engine.store, GOVERNANCE_USERS)
        from tests.test_governance import U
        cid = engine.start("approval", U["grid"], {"wish_title": "楼道装灯", "grid": "renjia-g1"}).id
        clock.advance(days=3)
        deadline = time.monotonic() + 10
        while engine.get(cid).state != "expired" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.get(cid).state == "expired"
        assert [h["by"] for h in engine.get(cid).history] == ["grid", "system"]
    finally:
        app.extensions["civicflow_ticker"].stop()
        engine.store.close()


def test_public_notice_counts_the_days_left(app: Any, who: Any, clock: FrozenClock):
    cid = started(who("staff").post("/start/appraisal", {"person": "陈静", "unit": "renjia", "summary": "述职"}))
    for name in ("r1", "r2", "r3"):
        who(name).post(f"/cases/{cid}/contribute", {"stars": "4"})
    act(who("secretary"), cid, "close_rating")
    for name in ("street", "street2", "street3"):
        who(name).post(f"/cases/{cid}/contribute", {"service": "70", "attitude": "70", "results": "70"})
    act(who("street"), cid, "to_notice")  # 5 days
    assert "剩余 5 天" in Browser(app).get("/public").get_data(as_text=True)
    clock.advance(days=4, hours=1)
    assert "剩余 1 天" in Browser(app).get(f"/public/{cid}").get_data(as_text=True)
