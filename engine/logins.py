"""Login attempts and sessions: how many failures an account or an address may have before it must wait,
the record of every attempt admins read, and the session ids a user's record holds.

Why the store and not process memory: a district runs several app processes (and hosts) on one database; a
counter in one worker's memory would let an attacker spread guesses over the workers, and a session ended
at logout in one worker would live on in the others. Each attempt is one small document, found through an
index (no scan), so the check costs two indexed lookups of at most a few documents.

No Flask here: the web layer passes the username, the client address and the moment.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from .clock import Clock, iso
from .clock import now as default_clock
from .store.base import Doc, Index
from .users import USERS, User

if TYPE_CHECKING:
    from .store.base import Store

LOGINS = "logins"
LOGIN_INDEX = "logins"
NO_UNIT = "-"  # attempts on a username nobody has: shown to the admins of the whole tree
MAX_SESSIONS = 10  # a person logged in on a phone, an office PC and a laptop; older sessions end first


def login_index() -> Index:
    """Attempts per username, failures per address and failures per org unit, oldest first by time."""
    def keys(doc: Doc) -> list[tuple[str, str]]:
        found = [("user", doc["username"])]
        if not doc.get("ok"):
            found += [("addr_failed", doc.get("address") or ""), ("failed", doc.get("unit") or NO_UNIT)]
        return found
    return Index(LOGIN_INDEX, LOGINS, keys=keys, order=lambda d: (d.get("at") or "", d["id"]), version="1")


@dataclass(frozen=True)
class LoginPolicy:
    """How many failures in a row an account may have, and how many one address may have in ``window``,
    before further attempts are refused for the rest of ``window`` (counted from the last failure for an
    account, from the oldest counted failure for an address). An address limit well above the account one
    lets an office behind one NAT address keep working while one person mistypes."""

    account_failures: int = 5
    address_failures: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Refusal:
    """An attempt refused before the password was checked: who is limited and for how many more minutes."""

    scope: str  # "account" or "address"
    minutes: int

    def message(self) -> dict[str, str]:
        if self.scope == "account":
            return {"zh": f"该账号连续登录失败次数过多，请 {self.minutes} 分钟后再试，或请管理员重置密码。",
                    "en": f"Too many failed logins for this account. Try again in {self.minutes} minutes, "
                          "or ask your administrator to reset the password."}
        return {"zh": f"此网络地址登录失败次数过多，请 {self.minutes} 分钟后再试。",
                "en": f"Too many failed logins from this address. Try again in {self.minutes} minutes."}


def _minutes(left: dt.timedelta) -> int:
    return max(1, -(-int(left.total_seconds()) // 60))  # rounded up: "1 minute" until it is really over


class Logins:
    """Checks and records login attempts, and starts and ends sessions, on one store."""

    def __init__(self, store: "Store", clock: Clock = default_clock, policy: LoginPolicy | None = None):
        self.store = store
        self.clock = clock
        self.policy = policy or LoginPolicy()

    def refusal(self, username: str, address: str) -> Refusal | None:
        """Why an attempt must wait, or None. Refused attempts are neither checked nor recorded, so waiting
        is enough to try again and a locked account does not tell whether the password was right."""
        now = self.clock()
        policy = self.policy
        recent = self.store.lookup(LOGIN_INDEX, [("user", username)], limit=policy.account_failures).docs
        failures = []
        for doc in recent:  # newest first: the failures since the last success
            if doc.get("ok"):
                break
            failures.append(doc)
        if len(failures) >= policy.account_failures:
            left = _parse(failures[0]["at"]) + policy.window - now
            if left > dt.timedelta(0):
                return Refusal("account", _minutes(left))
        if address:
            counted = self.store.lookup(LOGIN_INDEX, [("addr_failed", address)], limit=policy.address_failures).docs
            if len(counted) >= policy.address_failures:
                left = _parse(counted[-1]["at"]) + policy.window - now
                if left > dt.timedelta(0):
                    return Refusal("address", _minutes(left))
        return None

    def failed(self, username: str, address: str, user: User | None) -> None:
        """Record a wrong password (or an unknown username: the attempt is kept under :data:`NO_UNIT`)."""
        with self.store.transaction() as tx:
            tx.insert(LOGINS, self._attempt(username, address, user, ok=False))

    def succeeded(self, user: User, address: str) -> str:
        """Record the login and start a session; returns its id, which the session cookie carries.

        A new id at every login: a session id an attacker planted before the login is worth nothing after
        it (no fixation), and logout or a password reset ends exactly the sessions the record lists."""
        sid = secrets.token_urlsafe(24)
        with self.store.transaction() as tx:
            tx.insert(LOGINS, self._attempt(user.username, address, user, ok=True))
            doc = tx.get(USERS, user.id) if user.id is not None else None
            if doc is not None:
                doc["sessions"] = (list(doc.get("sessions") or ()) + [sid])[-MAX_SESSIONS:]
                tx.replace(USERS, user.id, doc)
        return sid

    def end_session(self, user: User, sid: str) -> None:
        if user.id is None or sid not in user.sessions:
            return
        with self.store.transaction() as tx:
            doc = tx.get(USERS, user.id)
            if doc is not None and sid in (doc.get("sessions") or ()):
                doc["sessions"] = [s for s in doc["sessions"] if s != sid]
                tx.replace(USERS, user.id, doc)

    def recent_failures(self, units: Iterable[str], limit: int = 100) -> list[Doc]:
        """The latest failed attempts on accounts of ``units`` (and :data:`NO_UNIT` if listed), newest first."""
        return self.store.lookup(LOGIN_INDEX, [("failed", u) for u in units], limit=limit).docs

    def _attempt(self, username: str, address: str, user: User | None, *, ok: bool) -> dict[str, Any]:
        return {"at": iso(self.clock()), "username": username[:80], "address": address[:64], "ok": ok,
                "unit": user.org_unit if user is not None else NO_UNIT}


def session_valid(user: User, sid: Any) -> bool:
    """Whether a session cookie's id is one the user's record still lists (ended by logout, a password
    reset or deactivation otherwise)."""
    return isinstance(sid, str) and sid in user.sessions


def _parse(at: str) -> dt.datetime:
    return dt.datetime.fromisoformat(at)
