"""People who use Civicflow: a username, hashed password, roles and one org unit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

USERS = "users"


@dataclass(frozen=True)
class User:
    username: str
    name: str
    roles: tuple[str, ...]
    org_unit: str
    password_hash: str = field(default="", repr=False)
    lang: str = "zh"
    id: int | None = None
    active: bool = True  # a deactivated user keeps their record and history but cannot log in
    sessions: tuple[str, ...] = field(default=(), repr=False)  # ids of the sessions still open (engine.logins)
    #: set on a delegator's record while their delegate acts on a case for them (``engine.delegation.proxy``): the
    #: roles and scope are the delegator's, the history names the delegate
    delegate: "User | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "User":
        return cls(username=doc["username"], name=doc.get("name") or doc["username"], roles=tuple(doc.get("roles", ())),
                   org_unit=doc.get("org_unit", ""), password_hash=doc.get("password_hash", ""),
                   lang=doc.get("lang", "zh"), id=doc.get("id"),
                   active=doc.get("active", True) is not False, sessions=tuple(doc.get("sessions") or ()))

    def to_doc(self) -> dict[str, Any]:
        return {"username": self.username, "name": self.name, "roles": list(self.roles), "org_unit": self.org_unit,
                "password_hash": self.password_hash, "lang": self.lang, "active": self.active}

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    def public(self) -> dict[str, Any]:
        """What expressions (guards) may see of a user."""
        return {"username": self.username, "name": self.name, "roles": list(self.roles), "org_unit": self.org_unit}


MIN_PASSWORD = 8
# The passwords people pick first (and guessers try first); a password containing one is refused too.
COMMON_PASSWORDS = frozenset("""
password passw0rd password1 admin admin123 administrator qwerty qwerty123 abc123 abcd1234 letmein welcome
iloveyou monkey dragon 123456 1234567 12345678 123456789 1234567890 111111 000000 888888 666666 123123
a123456 a12345678 woaini woaini1314 1qaz2wsx qwe123 zxcvbnm aa123456 changeme secret
""".split())


def password_problems(password: str, username: str = "") -> list[dict[str, str]]:
    """What makes ``password`` too weak to set (empty: it will do), as ``{"zh", "en"}`` messages.

    A minimum, not a meter: long enough, not only letters or only digits, not the username, not one of the
    passwords tried first. Length matters most (NIST SP 800-63B); the rest refuse the guesses that come first.
    """
    problems = []
    if len(password) < MIN_PASSWORD:
        problems.append({"zh": f"密码至少 {MIN_PASSWORD} 位。", "en": f"A password needs at least {MIN_PASSWORD} characters."})
    if not (any(c.isalpha() for c in password) and any(c.isdigit() for c in password)):
        problems.append({"zh": "密码须同时包含字母和数字。", "en": "A password needs both letters and digits."})
    lowered = password.lower()
    if username and username.lower() in lowered:
        problems.append({"zh": "密码不能包含用户名。", "en": "A password must not contain the username."})
    if lowered in COMMON_PASSWORDS or any(len(w) >= 6 and w in lowered and len(lowered) - len(w) <= 2
                                          for w in COMMON_PASSWORDS):
        problems.append({"zh": "这个密码太常见，容易被猜到。", "en": "This password is too common; it is easy to guess."})
    return problems


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def find_user(store: Any, username: str) -> User | None:
    """The user by username, through the ``users`` index the engine declares on its store."""
    doc = store.first(USERS, ("username", username))
    return User.from_doc(doc) if doc else None
