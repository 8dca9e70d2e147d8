"""Notifications that reach people outside the app: a resident who asked for e-mail gets one from a real
SMTP server on 127.0.0.1 (aiosmtpd) when their report is dealt with, a grid worker who asked for SMS gets a
POST on the operator's gateway (plain JSON, WeCom or DingTalk robot format), each with the link to the
case and never a form's values; kinds not asked for, channels the server does not offer and a server that
does not answer are handled as a person would expect."""
from __future__ import annotations

import email
import email.policy
import json
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiosmtpd.controller import Controller

from engine.channels import ChannelConfig, Preferences, problems
from engine.clock import FrozenClock
from engine.notify import KINDS
from engine.users import USERS
from engine.webhooks import OUTBOX, Deliverer, http_send
from tests.conftest import act, shipped_app, started
from tests.test_webhooks import Receiver

PEOPLE = [("resident", "王芳", ["resident"], "renjia-g1"), ("grid", "赵敏", ["grid_worker"], "renjia-g1")]
REPORT = {"category": "hazard", "description": "1号楼2单元楼道堆放旧家具，堵塞消防通道", "address": "1号楼2单元楼道",
          "grid": "renjia-g1", "reporter_type": "resident", "reporter_phone": "13812345678"}


class Mailbox:
    """What a real SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    with socket.socket() as probe:  # aiosmtpd checks readiness by connecting, so it needs a real port number
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def config(smtp_port: int | None = None, http_url: str = "", fmt: str = "json") -> ChannelConfig:
    environ = {"CIVICFLOW_BASE_URL": "https://cf.example.org"}
    if smtp_port:
        environ |= {"CIVICFLOW_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "CIVICFLOW_MAIL_FROM": "noreply@cf.example.org"}
    if http_url:
        environ |= {"CIVICFLOW_NOTIFY_HTTP_URL": http_url, "CIVICFLOW_NOTIFY_HTTP_FORMAT": fmt}
    return ChannelConfig.from_environ(environ, http_send)


def prefer(app: Any, username: str, **prefs: Any) -> None:
    store = app.extensions["civicflow"].store
    with store.transaction() as tx:
        doc = tx.first(USERS, ("username", username))
        doc["notify"] = Preferences(**prefs).to_doc()
        tx.replace(USERS, doc["id"], doc)


def handled(who: Any) -> int:
    """A resident reports, the grid worker handles and resolves it: the resident is told (处置完毕)."""
    cid = started(who("resident").post("/start/problem_report", REPORT))
    assert act(who("grid"), cid, "handle", comment="到现场核实属实").status_code == 302
    assert act(who("grid"), cid, "resolve", resolution="组织志愿者清理楼道", resolved_on="2026-11-28").status_code == 302
    return cid


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, PEOPLE)


def send(app: Any, clock: FrozenClock, channels: ChannelConfig) -> dict[str, int]:
    return Deliverer(app.extensions["civicflow"].store, clock, channels=channels).deliver_due()


def test_an_email_reaches_the_resident_with_the_link_and_no_form_values(app: Any, who: Any, clock: FrozenClock,
                                                                        smtp: tuple[Mailbox, int]):
    mailbox, port = smtp
    prefer(app, "resident", channels=("email",), email="wangfang@example.org")
    cid = handled(who)
    outcome = send(app, clock, config(port))
    assert outcome["delivered"] >= 1 and outcome["failed"] == 0
    assert [m.rcpt_tos for m in mailbox.messages] == [["wangfang@example.org"]] * len(mailbox.messages)
    message = email.message_from_bytes(mailbox.messages[-1].content, policy=email.policy.default)
    text = message.get_body().get_content()
    assert f"https://cf.example.org/cases/{cid}" in text and f"#{cid}" in message["Subject"]
    assert "处置完毕" in text or "处置完毕" in message["Subject"]
    assert "noreply@cf.example.org" in message["From"]
    assert "13812345678" not in text  # the reporter's phone (sensitive) never leaves in a message
    assert all(d["status"] == "delivered" for d in app.extensions["civicflow"].store.search(OUTBOX))


def test_sms_through_the_gateway_in_each_format(app: Any, who: Any, clock: FrozenClock, receiver: Receiver):
    prefer(app, "resident", channels=("http",), mobile="13900001111")
    cid = handled(who)
    for fmt, check in (("json", lambda b: b["to"] == "13900001111" and f"#{cid}" in b["text"]),
                       ("wecom", lambda b: b["msgtype"] == "text" and b["text"]["mentioned_mobile_list"] == ["13900001111"]),
                       ("dingtalk", lambda b: b["at"]["atMobiles"] == ["13900001111"])):
        store = app.extensions["civicflow"].store
        with store.transaction() as tx:  # send the same messages again in this format
            for doc in tx.search(OUTBOX):
                doc.update(status="pending", next_at="2000-01-01T00:00:00+08:00")
                tx.replace(OUTBOX, doc["id"], doc)
        receiver.got.clear()
        assert send(app, clock, config(http_url=receiver.url, fmt=fmt))["delivered"] >= 1
        bodies = [json.loads(g["body"]) for g in receiver.got]
        assert bodies and all(check(b) for b in bodies), (fmt, bodies)


def test_only_the_kinds_asked_for(app: Any, who: Any, clock: FrozenClock, smtp: tuple[Mailbox, int]):
    mailbox, port = smtp
    prefer(app, "resident", channels=("email",), email="wangfang@example.org", kinds=("overdue",))
    handled(who)
    assert app.extensions["civicflow"].store.search(OUTBOX) == [] and send(app, clock, config(port))["delivered"] == 0


def test_nobody_asked_nothing_leaves(app: Any, who: Any, clock: FrozenClock, smtp: tuple[Mailbox, int]):
    handled(who)
    assert app.extensions["civicflow"].store.search(OUTBOX) == []


def test_a_channel_the_server_no_longer_offers_fails_at_once_with_a_reason(app: Any, who: Any, clock: FrozenClock):
    prefer(app, "resident", channels=("email",), email="wangfang@example.org")
    handled(who)
    assert send(app, clock, config())["failed"] >= 1
    (doc, *_) = app.extensions["civicflow"].store.search(OUTBOX)
    assert doc["status"] == "failed" and "not set up" in doc["last_error"]


def test_an_smtp_server_that_does_not_answer_is_retried(app: Any, who: Any, clock: FrozenClock, smtp: Any):
    _mailbox, port = smtp
    prefer(app, "resident", channels=("email",), email="wangfang@example.org")
    handled(who)
    dead = config(port)
    dead.channels["email"] = type(dead.channels["email"])("smtp://127.0.0.1:9", "noreply@cf.example.org")
    assert send(app, clock, dead)["retrying"] >= 1
    clock.advance(minutes=2)
    assert send(app, clock, config(port))["delivered"] >= 1


@pytest.mark.parametrize("prefs, offered, field", [
    (Preferences(channels=("email",)), ("email",), "email"),
    (Preferences(channels=("email",), email="not-an-address"), ("email",), "email"),
    (Preferences(channels=("http",), mobile="12345"), ("http",), "mobile"),
    (Preferences(channels=("http",), mobile="13900001111"), ("email",), "channels"),
    (Preferences(kinds=("nonsense",)), (), "kinds"),
])
def test_preferences_are_checked(prefs: Preferences, offered: tuple[str, ...], field: str):
    assert field in problems(prefs, offered, KINDS)


def test_good_preferences_pass():
    prefs = Preferences(channels=("email", "http"), email="a@example.org", mobile="13900001111", kinds=("overdue",))
    assert problems(prefs, ("email", "http"), KINDS) == {}


@pytest.mark.parametrize("environ, message", [
    ({"CIVICFLOW_SMTP_URL": "mail.example.org"}, "CIVICFLOW_SMTP_URL must look like"),
    ({"CIVICFLOW_SMTP_URL": "smtp://mail.example.org"}, "CIVICFLOW_MAIL_FROM"),
    ({"CIVICFLOW_NOTIFY_HTTP_URL": "gateway"}, "CIVICFLOW_NOTIFY_HTTP_URL"),
    ({"CIVICFLOW_NOTIFY_HTTP_URL": "https://g.example.org", "CIVICFLOW_NOTIFY_HTTP_FORMAT": "telex"},
     "CIVICFLOW_NOTIFY_HTTP_FORMAT"),
])
def test_a_mistyped_setting_stops_the_start_with_one_line(tmp_path: Path, environ: dict[str, str], message: str):
    from tests.test_server import civicflow
    done = civicflow(tmp_path / "instance", "tick", **environ)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------------ the account page

@pytest.fixture
def offered(tmp_path: Path, clock: FrozenClock, smtp: tuple[Mailbox, int], receiver: Receiver) -> Any:
    """An app whose operator set up e-mail and an SMS gateway."""
    from engine.web import create_app
    from tests.conftest import ROOT, add_users
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": str(tmp_path / "cf.json"),
                      "UPLOADS": str(tmp_path / "up"), "DEFINITIONS": str(ROOT), "CLOCK": clock,
                      "CHANNELS": config(smtp[1], receiver.url)})
    add_users(app.extensions["civicflow"].store, PEOPLE)
    yield app
    app.extensions["civicflow"].store.close()


def test_a_person_chooses_channels_on_their_account_page(offered: Any, smtp: tuple[Mailbox, int], clock: FrozenClock):
    from tests.conftest import Browser
    resident = Browser(offered).login("resident")
    page = resident.get("/account").get_data(as_text=True)
    assert "站外通知" in page and 'value="email"' in page and 'value="http"' in page
    bad = resident.post("/account/notifications", {"channels": ["email"], "email": "wang@"}, page="/account")
    assert bad.status_code == 422 and "请填写有效的电子邮件地址" in bad.get_data(as_text=True)
    assert 'value="wang@"' in bad.get_data(as_text=True)  # what was typed stays
    good = resident.post("/account/notifications", {"channels": ["email"], "email": "wangfang@example.org",
                                                    "kinds": ["result", "case_changed"]}, page="/account")
    assert good.status_code == 302
    saved = offered.extensions["civicflow"].store.first(USERS, ("username", "resident"))["notify"]
    assert saved == {"channels": ["email"], "email": "wangfang@example.org", "mobile": "",
                     "kinds": ["result", "case_changed"]}
    who = {u: Browser(offered).login(u) for u in ("resident", "grid")}
    handled(lambda u: who[u])
    assert send(offered, clock, offered.extensions["civicflow_channels"])["delivered"] >= 1
    assert smtp[0].messages and smtp[0].messages[0].rcpt_tos == ["wangfang@example.org"]


def test_without_channels_the_page_says_so(app: Any):
    from tests.conftest import Browser
    page = Browser(app).login("resident").get("/account").get_data(as_text=True)
    assert "本系统未开通邮件或短信通知" in page


def test_a_person_changes_their_password_and_other_sessions_end(app: Any):
    from tests.conftest import PASSWORD, Browser
    phone, desk = Browser(app).login("resident"), Browser(app).login("resident")
    wrong = desk.post("/account/password", {"current": "nope", "new": "river-stone42", "again": "river-stone42"},
                      page="/account")
    assert wrong.status_code == 422 and "当前密码不正确" in wrong.get_data(as_text=True)
    weak = desk.post("/account/password", {"current": PASSWORD, "new": "short1", "again": "short1"}, page="/account")
    assert weak.status_code == 422 and "密码至少 8 位" in weak.get_data(as_text=True)
    differ = desk.post("/account/password", {"current": PASSWORD, "new": "river-stone42", "again": "river-stone43"},
                       page="/account")
    assert differ.status_code == 422 and "两次输入的新密码不一致" in differ.get_data(as_text=True)
    done = desk.post("/account/password", {"current": PASSWORD, "new": "river-stone42", "again": "river-stone42"},
                     page="/account")
    assert done.status_code == 302
    assert desk.get("/account").status_code == 200 and phone.get("/account").status_code == 302
    assert Browser(app).post("/login", {"username": "resident", "password": PASSWORD}).status_code == 401
    Browser(app).login("resident", "river-stone42")
