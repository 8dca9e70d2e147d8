"""Logging in and out as a person (and a guesser) does: the limits per account and per address with their
cooling-off time, a new session at every login, sessions that end at logout, a password reset or
deactivation, the password policy, and the failed logins an admin sees."""
from __future__ import annotations

import re
from typing import Any

import pytest

from engine.logins import LOGINS, LoginPolicy, Logins, Refusal
from engine.users import find_user, password_problems
from tests.conftest import PASSWORD, Browser, add_users

POLICY = LoginPolicy()


def store(app: Any) -> Any:
    return app.extensions["civicflow"].store


def attempt(app: Any, username: str, password: str, address: str = "10.0.0.1", client: Browser | None = None) -> Any:
    client = client or Browser(app)
    return client.post("/login", {"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def text(response: Any) -> str:
    return response.get_data(as_text=True)


# ------------------------------------------------------------------------------------------ per account

def test_an_account_waits_after_five_failures_in_a_row_then_may_try_again(app: Any, clock: Any):
    for _ in range(POLICY.account_failures):
        assert attempt(app, "staff", "wrong-guess1").status_code == 401
    refused = attempt(app, "staff", PASSWORD)  # even the right password waits: no oracle for the guesser
    assert refused.status_code == 429 and refused.headers["Retry-After"] == str(15 * 60)
    assert "该账号连续登录失败次数过多，请 15 分钟后再试" in text(refused)
    assert 'value="staff"' in text(refused)  # what was typed stays
    clock.advance(minutes=14)
    assert "请 1 分钟后再试" in text(attempt(app, "staff", PASSWORD))
    clock.advance(minutes=1, seconds=1)
    assert attempt(app, "staff", PASSWORD).status_code == 302
    # other accounts were never affected
    assert attempt(app, "grid", PASSWORD, address="10.0.0.2").status_code == 302


def test_a_success_resets_the_count_and_refused_attempts_are_not_counted(app: Any, clock: Any):
    for _ in range(POLICY.account_failures - 1):
        attempt(app, "staff", "wrong-guess1")
    assert attempt(app, "staff", PASSWORD).status_code == 302
    for _ in range(POLICY.account_failures - 1):
        assert attempt(app, "staff", "wrong-guess1").status_code == 401
    assert attempt(app, "staff", PASSWORD).status_code == 302  # four in a row is still under the limit
    for _ in range(POLICY.account_failures):
        attempt(app, "staff", "wrong-guess1")
    recorded = len(store(app).search(LOGINS))
    for _ in range(3):
        assert attempt(app, "staff", "wrong-guess1").status_code == 429
    assert len(store(app).search(LOGINS)) == recorded  # waiting out the window is enough, whatever was tried


def test_an_unknown_username_gets_the_same_answers_as_a_real_one(app: Any):
    answers = {}
    for username in ("staff", "nobody_here"):
        seen = [attempt(app, username, "wrong-guess1").status_code for _ in range(POLICY.account_failures + 1)]
        answers[username] = (seen, re.sub(r"\s+", " ", text(attempt(app, username, "x"))).count("15 分钟后再试"))
    assert answers["staff"] == answers["nobody_here"] == ([401] * POLICY.account_failures + [429], 1)


def test_in_english_the_message_is_english(app: Any):
    client = Browser(app)
    client.post("/lang/en", {}, page="/login")
    for _ in range(POLICY.account_failures):
        attempt(app, "staff", "wrong-guess1", client=client)
    assert "Too many failed logins for this account. Try again in 15 minutes" in text(
        attempt(app, "staff", PASSWORD, client=client))


# ------------------------------------------------------------------------------------------ per address

def test_an_address_guessing_many_accounts_waits_but_others_do_not(app: Any, clock: Any):
    names = [f"guess{i}" for i in range(POLICY.address_failures)]
    for name in names:
        assert attempt(app, name, "wrong-guess1", address="203.0.113.9").status_code == 401
    refused = attempt(app, "staff", PASSWORD, address="203.0.113.9")
    assert refused.status_code == 429 and "此网络地址登录失败次数过多" in text(refused)
    assert attempt(app, "staff", PASSWORD, address="198.51.100.7").status_code == 302
    clock.advance(minutes=15, seconds=1)
    assert attempt(app, "staff", PASSWORD, address="203.0.113.9").status_code == 302


@pytest.mark.parametrize("policy, failures, minutes, expected", [
    (LoginPolicy(account_failures=3), 2, 0, None),
    (LoginPolicy(account_failures=3), 3, 0, Refusal("account", 15)),
    (LoginPolicy(account_failures=3), 3, 10, Refusal("account", 5)),
    (LoginPolicy(account_failures=3), 3, 16, None),
])
def test_the_policy_counts_failures_in_a_row_within_the_window(app: Any, clock: Any, policy: LoginPolicy,
                                                                failures: int, minutes: int, expected: Any):
    logins = Logins(store(app), clock, policy)
    for _ in range(failures):
        logins.failed("staff", f"10.1.0.{failures}", None)
    clock.advance(minutes=minutes)
    assert logins.refusal("staff", "10.9.9.9") == expected


# ------------------------------------------------------------------------------------------ sessions

def session_cookie(client: Browser) -> str:
    cookie = client.client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def test_login_starts_a_new_session_and_logout_ends_every_copy_of_it(app: Any):
    person = Browser(app)
    person.get("/login")
    before = session_cookie(person)
    person.login("staff")
    after = session_cookie(person)
    assert after != before
    # an attacker who planted the pre-login cookie gets nothing
    planted = Browser(app)
    planted.client.set_cookie("session", before)
    assert planted.get("/").status_code == 302
    # a copy of the logged-in cookie works until the person logs out, then it is dead
    thief = Browser(app)
    thief.client.set_cookie("session", after)
    assert thief.get("/").status_code == 200
    person.logout()
    assert thief.get("/").status_code == 302
    assert person.get("/").status_code == 302


def test_logout_is_a_post_with_a_csrf_token(app: Any):
    person = Browser(app).login("staff")
    assert person.client.get("/logout").status_code == 405
    assert person.client.post("/logout").status_code == 400  # no token: refused, still logged in
    assert person.get("/").status_code == 200


def test_sessions_on_two_devices_are_separate(app: Any):
    phone, desk = Browser(app).login("staff"), Browser(app).login("staff")
    phone.logout()
    assert desk.get("/").status_code == 200 and phone.get("/").status_code == 302


def test_a_password_reset_and_a_deactivation_end_every_session(app: Any):
    add_users(store(app), [("admin_x", "管理员", ["admin"], "huizhou")])
    admin = Browser(app).login("admin_x")
    person = Browser(app).login("staff")
    admin.post("/admin/users/staff/password", {"password": "fresh-pass42"}, page="/admin/users/staff")
    assert person.get("/").status_code == 302
    person.login("staff", "fresh-pass42")
    admin.post("/admin/users/staff/deactivate", {}, page="/admin/users/staff")
    assert person.get("/").status_code == 302
    assert find_user(store(app), "staff").sessions == ()


# ------------------------------------------------------------------------------------------ admins see failures

def test_admins_see_recent_failed_logins_of_their_units_only(app: Any):
    add_users(store(app), [("admin_rj", "社区管理员", ["admin"], "renjia"), ("admin_x", "管理员", ["admin"], "huizhou")])
    attempt(app, "staff", "wrong-guess1", address="192.0.2.44")      # staff: community renjia
    attempt(app, "ghost_user", "wrong-guess1", address="192.0.2.45")  # nobody has this username
    attempt(app, "grid", PASSWORD, address="192.0.2.46")             # a success is not a failure
    top = text(Browser(app).login("admin_x").get("/admin/logins"))
    assert "192.0.2.44" in top and "ghost_user" in top and "无此用户" in top and "192.0.2.46" not in top
    assert "连续登录失败 5 次后须等待 15 分钟" in top
    community = Browser(app).login("admin_rj")
    page = text(community.get("/admin/logins"))
    assert "192.0.2.44" in page and "ghost_user" not in page
    assert Browser(app).login("staff").get("/admin/logins").status_code == 403


# ------------------------------------------------------------------------------------------ password policy

@pytest.mark.parametrize("password, username, problems", [
    ("short1", "", ["密码至少 8 位。"]),
    ("onlyletters", "", ["密码须同时包含字母和数字。"]),
    ("1234567890", "", ["密码须同时包含字母和数字。", "这个密码太常见，容易被猜到。"]),
    ("wang_w2026", "wang_w", ["密码不能包含用户名。"]),
    ("password1", "", ["这个密码太常见，容易被猜到。"]),
    ("Password12", "", ["这个密码太常见，容易被猜到。"]),
    ("meadow-river7", "wang_w", []),
    ("红灯笼高挂2026", "", []),
])
def test_the_password_policy(password: str, username: str, problems: list[str]):
    assert [p["zh"] for p in password_problems(password, username)] == problems


def test_an_admin_cannot_set_a_weak_password_and_generated_ones_pass(app: Any):
    add_users(store(app), [("admin_x", "管理员", ["admin"], "huizhou")])
    admin = Browser(app).login("admin_x")
    weak = admin.post("/admin/users/staff/password", {"password": "password1"}, page="/admin/users/staff")
    assert weak.status_code == 422 and "这个密码太常见" in text(weak)
    generated = admin.post("/admin/users/staff/password", {}, page="/admin/users/staff")
    shown = re.search(r'id="password">([^<]+)<', text(generated))
    assert shown and password_problems(shown.group(1)) == []
    assert attempt(app, "staff", shown.group(1)).status_code == 302
