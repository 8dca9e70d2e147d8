"""Webhooks as an admin and a receiving system see them: subscribe on the admin page, a real HTTP receiver on
127.0.0.1 gets signed POSTs for the events asked for, only for cases of the admin's units and without the
fields marked sensitive; the outbox is written with the change (nothing for a refused one), survives a
restart, retries with backoff, gives up after the last attempt and can be sent again; a running server
sends them by itself."""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from engine.clock import FrozenClock
from engine.web import create_app
from engine.webhooks import MAX_ATTEMPTS, OUTBOX, Deliverer, verify
from tests.conftest import DURABLE_STORES, ROOT, Browser, act, add_users, shipped_app, started, store_location

REPORT = {"category": "hazard", "description": "1号楼2单元楼道堆放旧家具，堵塞消防通道", "address": "1号楼2单元楼道",
          "grid": "renjia-g1", "reporter_type": "resident", "reporter_phone": "13812345678"}
ADMINS = [("admin_rj", "社区管理员", ["admin"], "renjia"), ("admin_wf", "文峰管理员", ["admin"], "wenfeng")]


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent and answers with ``statuses`` in turn."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"try later")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[str]:
        return [json.loads(g["body"])["event"] for g in self.got]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def subscribe(admin: Browser, url: str, events: list[str], workflows: list[str] = ()) -> tuple[int, str]:
    response = admin.post("/admin/webhooks/", {"url": url, "events": events, "workflows": list(workflows)})
    page = response.get_data(as_text=True)
    assert response.status_code == 201, page[-2000:]
    secret = re.search(r'id="secret">([^<]+)<', page).group(1)
    subscription = int(re.findall(r'/admin/webhooks/(\d+)"', page)[-1])
    return subscription, secret


def deliver(app: Any, clock: FrozenClock) -> dict[str, int]:
    engine = app.extensions["civicflow"]
    return Deliverer(engine.store, clock).deliver_due()


def outbox(app: Any) -> list[dict[str, Any]]:
    return app.extensions["civicflow"].store.search(OUTBOX)


@pytest.fixture
def admins(app: Any) -> Any:
    add_users(app.extensions["civicflow"].store, ADMINS)
    return {name: Browser(app).login(name) for name, *_ in ADMINS}


# ------------------------------------------------------------------------------------------ every store

def test_a_started_case_is_posted_signed_without_its_sensitive_fields(app: Any, admins: Any, receiver: Receiver,
                                                                       clock: FrozenClock):
    subscription, secret = subscribe(admins["admin_rj"], receiver.url, ["case_started", "state_entered"])
    assert subscription and secret.startswith("whsec_")
    assert secret not in admins["admin_rj"].get("/admin/webhooks/").get_data(as_text=True)  # shown once
    cid = started(Browser(app).login("resident").post("/start/problem_report", REPORT))
    queued = outbox(app)
    assert [(d["event"], d["status"]) for d in queued] == [("case_started", "pending")]  # with the change itself
    assert deliver(app, clock) == {"delivered": 1, "retrying": 0, "failed": 0}
    (got,) = receiver.got
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert verify(secret, headers["x-civicflow-timestamp"], got["body"], headers["x-civicflow-signature"])
    assert not verify("whsec_wrong", headers["x-civicflow-timestamp"], got["body"], headers["x-civicflow-signature"])
    assert headers["x-civicflow-event"] == "case_started" and headers["content-type"].startswith("application/json")
    body = json.loads(got["body"])
    assert body["case"]["id"] == cid and body["case"]["workflow"] == "problem_report"
    assert body["delivery"] == int(headers["x-civicflow-delivery"]) == queued[0]["id"]
    assert body["case"]["data"]["category"] == "hazard"
    assert "13812345678" not in got["body"].decode() and "reporter_phone" not in body["case"]["data"]
    assert outbox(app)[0]["status"] == "delivered"
    page = admins["admin_rj"].get(f"/admin/webhooks/{subscription}").get_data(as_text=True)
    assert "已送达" in page and f"/cases/{cid}" in page
    assert deliver(app, clock) == {"delivered": 0, "retrying": 0, "failed": 0}  # sent once


def test_only_the_events_processes_and_units_asked_for(app: Any, admins: Any, receiver: Receiver, clock: FrozenClock):
    subscribe(admins["admin_wf"], receiver.url, ["case_started"])                    # another community
    subscribe(admins["admin_rj"], receiver.url, ["case_started"], ["service_order"])  # another process
    subscribe(admins["admin_rj"], receiver.url, ["notice_opened"])                   # another event
    started(Browser(app).login("resident").post("/start/problem_report", REPORT))
    assert outbox(app) == [] and deliver(app, clock)["delivered"] == 0 and receiver.got == []


def test_a_refused_change_queues_nothing(app: Any, admins: Any, receiver: Receiver):
    subscribe(admins["admin_rj"], receiver.url, ["case_started"])
    refused = Browser(app).login("resident").post("/start/problem_report", {**REPORT, "reporter_phone": "123"})
    assert refused.status_code == 422 and outbox(app) == []


def test_retries_back_off_then_give_up_and_an_admin_sends_again(app: Any, admins: Any, receiver: Receiver,
                                                                 clock: FrozenClock):
    subscription, _secret = subscribe(admins["admin_rj"], receiver.url, ["case_started"])
    started(Browser(app).login("resident").post("/start/problem_report", REPORT))
    receiver.statuses = [500] * MAX_ATTEMPTS
    waits = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        outcome = deliver(app, clock)
        assert outcome == ({"delivered": 0, "retrying": 1, "failed": 0} if attempt < MAX_ATTEMPTS
                           else {"delivered": 0, "retrying": 0, "failed": 1})
        assert deliver(app, clock)["retrying"] == 0  # not due again at once
        (doc,) = outbox(app)
        assert doc["attempts"] == attempt and doc["last_status"] == 500 and "try later" in doc["last_error"]
        if attempt < MAX_ATTEMPTS:
            waits.append(doc["next_at"])
            clock.advance(hours=7)
    assert [w[11:16] for w in waits][:3] == ["09:01", "16:02", "23:04"]  # 1, 2, 4 minutes after each failure
    assert outbox(app)[0]["status"] == "failed" and len(receiver.got) == MAX_ATTEMPTS
    admin = admins["admin_rj"]
    page = admin.get(f"/admin/webhooks/{subscription}").get_data(as_text=True)
    assert "失败" in page and "HTTP 500" in page
    delivery = outbox(app)[0]["id"]
    admin.post(f"/admin/webhooks/{subscription}/deliveries/{delivery}/again", {}, page=f"/admin/webhooks/{subscription}")
    assert deliver(app, clock)["delivered"] == 1 and outbox(app)[0]["status"] == "delivered"


def test_nothing_answering_is_recorded_and_retried(app: Any, admins: Any, clock: FrozenClock):
    closed = Receiver()
    url = closed.url
    closed.close()  # nobody listens on that port any more
    subscribe(admins["admin_rj"], url, ["case_started"])
    started(Browser(app).login("resident").post("/start/problem_report", REPORT))
    assert deliver(app, clock)["retrying"] == 1
    assert "ConnectionRefusedError" in outbox(app)[0]["last_error"] or "URLError" in outbox(app)[0]["last_error"]


def test_a_switched_off_subscription_sends_nothing_more(app: Any, admins: Any, receiver: Receiver, clock: FrozenClock):
    subscription, _secret = subscribe(admins["admin_rj"], receiver.url, ["case_started"])
    resident = Browser(app).login("resident")
    started(resident.post("/start/problem_report", REPORT))
    admins["admin_rj"].post(f"/admin/webhooks/{subscription}/off", {}, page=f"/admin/webhooks/{subscription}")
    started(resident.post("/start/problem_report", REPORT))
    assert deliver(app, clock)["delivered"] == 0 and receiver.got == []
    assert [d["status"] for d in outbox(app)] == ["cancelled"]
    audit = admins["admin_rj"].get("/admin/audit").get_data(as_text=True)
    assert "订阅了 Webhook" in audit and "关闭了 Webhook" in audit


def test_a_test_delivery_checks_the_receiver(app: Any, admins: Any, receiver: Receiver, clock: FrozenClock):
    subscription, secret = subscribe(admins["admin_rj"], receiver.url, ["case_started"])
    admins["admin_rj"].post(f"/admin/webhooks/{subscription}/ping", {}, page=f"/admin/webhooks/{subscription}")
    assert deliver(app, clock)["delivered"] == 1 and receiver.events() == ["ping"]


def test_admins_see_only_their_units_hooks_and_others_none(app: Any, admins: Any, receiver: Receiver):
    subscription, _secret = subscribe(admins["admin_rj"], receiver.url, ["case_started"])
    assert receiver.url not in admins["admin_wf"].get("/admin/webhooks/").get_data(as_text=True)
    assert admins["admin_wf"].get(f"/admin/webhooks/{subscription}").status_code == 404
    assert admins["admin_wf"].post(f"/admin/webhooks/{subscription}/off", {}, page="/admin/webhooks/").status_code == 404
    staff = Browser(app).login("staff")
    assert staff.get("/admin/webhooks/").status_code == 403
    assert Browser(app).get("/admin/webhooks/").status_code == 302  # to the login page
    assert admins["admin_rj"].client.post("/admin/webhooks/", data={"url": receiver.url}).status_code == 400  # CSRF


@pytest.mark.parametrize("url, events, message", [
    ("ftp://example.org/x", ["case_started"], "请填写以 http:// 或 https:// 开头的完整网址"),
    ("https://example.org/x", [], "请至少选择一个事件"),
])
def test_a_bad_subscription_is_refused_and_what_was_typed_stays(app: Any, admins: Any, url: str, events: list[str],
                                                                message: str):
    response = admins["admin_rj"].post("/admin/webhooks/", {"url": url, "events": events})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and message in page and f'value="{url}"' in page


# ------------------------------------------------------------------------------------------ durable stores

POINT_USERS = [("volunteer", "李强", ["resident", "volunteer"], "renjia-g1"),
               ("staff", "陈静", ["community_staff"], "renjia"), ("secretary", "周伟", ["community_secretary"], "renjia"),
               ("admin_rj", "社区管理员", ["admin"], "renjia")]
ACTIVITY = {"activity_title": "常青藤夜间治安巡逻", "activity_type": "patrol", "activity_date": "2026-11-26",
            "place": "徽州人家社区各楼栋", "unit": "renjia", "hours": "2", "description": "夜间巡逻两小时"}


@pytest.fixture(params=DURABLE_STORES)
def durable(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, POINT_USERS, store_location(request.param, request, tmp_path))


def test_points_and_states_are_posted_in_order(durable: Any, receiver: Receiver, clock: FrozenClock):
    admin = Browser(durable).login("admin_rj")
    subscribe(admin, receiver.url, ["points_posted", "state_entered"], ["volunteer_activity"])
    staff, secretary = Browser(durable).login("staff"), Browser(durable).login("secretary")
    cid = started(staff.post("/start/volunteer_activity", ACTIVITY))
    assert act(staff, cid, "add_participants", assignees=["volunteer"], headcount="1").status_code == 302
    assert act(secretary, cid, "confirm").status_code == 302
    deliver(durable, clock)
    bodies = [json.loads(g["body"]) for g in receiver.got]
    assert [b["event"] for b in bodies] == ["state_entered", "state_entered", "points_posted"]
    assert bodies[-1]["account"] == "volunteer" and bodies[-1]["amount"] == 20 and bodies[-1]["balance"] == 20
    assert bodies[0]["previous"] is not None and bodies[0]["case"]["id"] == cid


def test_the_outbox_survives_a_restart(tmp_path: Path, clock: FrozenClock, receiver: Receiver):
    store = str(tmp_path / "cf.json")
    config = {"TESTING": True, "SECRET_KEY": "t", "STORE": store, "UPLOADS": str(tmp_path / "up"),
              "DEFINITIONS": str(ROOT), "CLOCK": clock}
    first = create_app(config)
    add_users(first.extensions["civicflow"].store, [("resident", "王芳", ["resident"], "renjia-g1"), *ADMINS])
    subscribe(Browser(first).login("admin_rj"), receiver.url, ["case_started"])
    started(Browser(first).login("resident").post("/start/problem_report", REPORT))
    first.extensions["civicflow"].store.close()  # the process ends before anything was sent
    second = create_app(config)
    try:
        assert deliver(second, clock)["delivered"] == 1 and receiver.events() == ["case_started"]
    finally:
        second.extensions["civicflow"].store.close()


def test_a_running_server_sends_webhooks_by_itself(tmp_path: Path, receiver: Receiver):
    from tests.test_server import Browser as HttpBrowser
    from tests.test_server import civicflow, serving
    instance = tmp_path / "instance"
    assert civicflow(instance, "demo").returncode == 0
    with serving(instance, CIVICFLOW_TICK_SECONDS="1") as server:
        admin = HttpBrowser(server.url, follow_redirects=False)
        assert admin.login("admin")[0] == 302
        token = admin.csrf_token("/admin/webhooks/")
        status, _headers, page = admin.request("/admin/webhooks/", {"csrf_token": token, "url": receiver.url,
                                                                    "events": "case_started"})
        assert status == 201, page[-1500:]
        resident = HttpBrowser(server.url, follow_redirects=False)
        assert resident.login("resident")[0] == 302
        token = resident.csrf_token("/start/problem_report")
        status, _headers, page = resident.request("/start/problem_report", {**REPORT, "csrf_token": token})
        assert status == 302, page[-1500:]
        server.wait_for_log("webhooks: {'delivered': 1", timeout=20)
    assert receiver.events() == ["case_started"]
