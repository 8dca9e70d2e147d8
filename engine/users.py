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

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "User":
        return cls(username=doc["username"], name=doc.get("name") or doc["username"], roles=tuple(doc.get("roles", ())),
                   org_unit=doc.get("org_unit", ""), password_hash=doc.get("password_hash", ""),
                   lang=doc.get("lang", "zh"), id=doc.get("id"),
                   active=doc.get("active", True) is not False)

    def to_doc(self) -> dict[str, Any]:
        return {"username": self.username, "name": self.name, "roles": list(self.roles), "org_unit": self.org_unit,
                "password_hash": self.password_hash, "lang": self.lang, "active": self.active}

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    def public(self) -> dict[str, Any]:
        """What expressions (guards) may see of a user."""
        return {"username": self.username, "name": self.name, "roles": list(self.roles), "org_unit": self.org_unit}


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def find_user(store: Any, username: str) -> User | None:
    """The user by username, through the ``users`` index the engine declares on its store."""
    doc = store.first(USERS, ("username", username))
    return User.from_doc(doc) if doc else None
