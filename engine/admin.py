"""What an admin does to people: create, edit, reset a password, deactivate, import many; each action with its
audit entry in the same store transaction, and only for users of the admin's unit and below.

No Flask here: the web layer (``engine.web.admin``) reads forms and files and shows what these functions
return; messages are ``{"zh", "en"}`` pairs like the rest of the engine's.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from .errors import NotAllowed, NotFound, SubmissionError
from .readmodel import AUDIT, PAGE_SIZE, Paged
from .store.base import Doc
from .logins import NO_UNIT, Logins
from .users import USERS, User, hash_password, password_problems

if TYPE_CHECKING:
    from .cases import Case
    from .runtime import Engine
    from .store.base import Transaction

ADMIN_ROLE = "admin"
USERNAME = re.compile(r"^[\w.@-]{2,40}$")  # \w: letters of any script, digits, underscore
_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # nothing that reads as another letter
ACTIONS = ("create", "edit", "reset_password", "deactivate", "reactivate", "import", "webhook_create", "webhook_on",
           "webhook_off", "webhook_redeliver")

Msg = dict[str, str]


def msg(zh: str, en: str) -> Msg:
    return {"zh": zh, "en": en}


def generate_password(length: int = 10) -> str:
    """A temporary password a person can read out over the phone (no 0/O, 1/l/I), meeting the password policy."""
    while True:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if not password_problems(password):
            return password


@dataclass(frozen=True)
class Scope:
    """The part of the org tree an admin manages: their own unit and everything below it.

    The ``admin`` role reaches every *case* (``scope: all``), but people are managed locally: an admin of
    one community must not see or change the users of another."""

    top: str
    units: tuple[str, ...]  # in the org tree's order, so pages list them as the tree does

    def covers(self, unit: str) -> bool:
        return unit in self.units


def is_admin(user: Any) -> bool:
    return user is not None and ADMIN_ROLE in user.roles and user.active


@dataclass(frozen=True)
class UserInput:
    """One person as an admin typed them (a form) or listed them (a row of an import file)."""

    username: str
    name: str
    roles: tuple[str, ...]
    unit: str
    password: str = ""


def split_roles(text: str) -> tuple[str, ...]:
    """``"resident, volunteer"``, ``"resident、volunteer"``, ``"resident，volunteer"``: each role once, in order."""
    parts = [p.strip() for p in re.split(r"[,，、;；\s]+", text or "")]
    return tuple(dict.fromkeys(p for p in parts if p))


class UserAdmin:
    """An admin's view of the people in their scope. Every method checks the scope of the user it touches."""

    def __init__(self, engine: "Engine", actor: User):
        if not is_admin(actor):
            raise NotAllowed(msg("只有管理员可以管理用户。", "Only administrators manage users."))
        self.engine = engine
        self.actor = actor
        self.read = engine.read
        org = engine.definitions.org
        self.scope = Scope(actor.org_unit, tuple(org.below(actor.org_unit)))

    # -- reading ---------------------------------------------------------------------
    @property
    def roles(self) -> list[str]:
        return list(self.engine.definitions.roles)

    def users(self, query: str = "", page: int = 1, size: int | None = PAGE_SIZE, unit: str = "") -> Paged[User]:
        """Users of the scope (or of one ``unit`` in it), optionally those whose username or name contains ``query``."""
        needle = query.strip().casefold()
        match = (lambda d: needle in (d.get("username") or "").casefold()
                 or needle in (d.get("name") or "").casefold()) if needle else None
        units = [unit] if unit and self.scope.covers(unit) else self.scope.units
        found = self.read.users_in(units, match, page, size)
        return Paged([User.from_doc(d) for d in found.items], found.total, found.page, found.size)

    def user(self, username: str) -> User:
        doc = self.read.user_doc(username)
        if doc is None:
            raise NotFound(msg(f"没有用户 {username}。", f"There is no user {username}."))
        user = User.from_doc(doc)
        if not self.scope.covers(user.org_unit):
            raise NotAllowed(msg(f"用户 {username} 不在您管理的范围内。", f"User {username} is outside the units you manage."))
        return user

    def unit_tree(self) -> list[dict[str, Any]]:
        """The units in scope, in tree order, with their depth below the admin's unit and users per unit."""
        org = self.engine.definitions.org
        base = len(org.ancestors(self.scope.top))
        return [{"unit": org.units[u], "depth": len(org.ancestors(u)) - base, "users": self.read.user_count(u)}
                for u in self.scope.units]

    def needing_reassignment(self, page: int = 1, size: int | None = PAGE_SIZE) -> tuple[list[User], Paged["Case"]]:
        """Deactivated users of the scope, and the open cases still assigned to any of them."""
        inactive = [User.from_doc(d) for d in self.read.inactive_users(self.scope.units)]
        if not inactive:
            return [], Paged([], 0, page, size or PAGE_SIZE)
        return inactive, self.read.open_assigned([u.username for u in inactive], page, size)

    def processes(self) -> list[dict[str, Any]]:
        """Each workflow with its current version and, per version cases started on, how many still run."""
        rows = []
        for wf in self.engine.definitions.workflows.values():
            # The engine's kept versions (engine.versions), counted from the read model: newest first here.
            found = {number: running for number, _digest, running in self.engine.versions(wf.id)}
            versions = [{"version": v, "running": n} for v, n in sorted(found.items(), reverse=True)
                        if n or v == wf.version]
            if not any(v["version"] == wf.version for v in versions):
                versions.insert(0, {"version": wf.version, "running": 0})
            rows.append({"workflow": wf, "version": wf.version, "versions": versions,
                         "running": sum(v["running"] for v in versions)})
        return rows

    def failed_logins(self, limit: int = 100) -> list[Doc]:
        """Recent failed logins on accounts of the admin's units; an admin of the whole tree also sees the
        attempts on usernames nobody has (guessing, typos)."""
        units = list(self.scope.units)
        if self.engine.definitions.org.units.get(self.scope.top) is None \
                or self.engine.definitions.org.units[self.scope.top].parent is None:
            units.append(NO_UNIT)
        return Logins(self.engine.store, self.engine.clock).recent_failures(units, limit)

    def audit(self, page: int = 1, size: int | None = PAGE_SIZE) -> Paged[Doc]:
        return self.read.audit(self.scope.units, page, size)

    # -- checking what was typed -----------------------------------------------------------
    def problems(self, item: UserInput, *, new: bool, taken: Iterable[str] = ()) -> dict[str, list[Msg]]:
        """What is wrong with ``item``, per field (empty: nothing). ``taken``: usernames already used
        elsewhere (earlier rows of the same import file)."""
        errors: dict[str, list[Msg]] = {}

        def add(name: str, message: Msg) -> None:
            errors.setdefault(name, []).append(message)

        definitions = self.engine.definitions
        if new:
            if not item.username:
                add("username", msg("请填写用户名。", "Enter a username."))
            elif not USERNAME.match(item.username):
                add("username", msg("用户名须为 2–40 个字母、数字或 . _ - @，不含空格。",
                                     "A username is 2–40 letters, digits or . _ - @, without spaces."))
            elif item.username in set(taken):
                add("username", msg(f"用户名 {item.username} 在文件中重复。", f"Username {item.username} appears twice in the file."))
            elif self.read.user_doc(item.username) is not None:
                add("username", msg(f"用户名 {item.username} 已存在。", f"Username {item.username} already exists."))
        if not item.name.strip():
            add("name", msg("请填写姓名。", "Enter a name."))
        if not item.roles:
            add("roles", msg("请至少选择一个角色。", "Choose at least one role."))
        for role in item.roles:
            if role not in definitions.roles:
                add("roles", msg(f"未知角色 {role}。", f"Unknown role {role}."))
        if not item.unit:
            add("unit", msg("请选择所属单位。", "Choose an org unit."))
        elif item.unit not in definitions.org.units:
            add("unit", msg(f"未知单位 {item.unit}。", f"Unknown org unit {item.unit}."))
        elif not self.scope.covers(item.unit):
            add("unit", msg(f"单位 {item.unit} 不在您管理的范围内。", f"Org unit {item.unit} is outside the units you manage."))
        if item.password:
            for problem in password_problems(item.password, item.username):
                add("password", problem)
        return errors

    # -- changing ----------------------------------------------------------------------
    def create(self, item: UserInput) -> str | None:
        """Add a user; returns the generated password if none was given (shown once, never stored in clear)."""
        errors = self.problems(item, new=True)
        if errors:
            raise SubmissionError(errors)
        password = item.password or generate_password()
        user = User(item.username, item.name.strip(), item.roles, item.unit, hash_password(password))
        with self.engine.store.transaction() as tx:
            if self.read.user_doc(item.username, tx) is not None:  # added meanwhile by someone else
                raise SubmissionError({"username": [msg(f"用户名 {item.username} 已存在。",
                                                        f"Username {item.username} already exists.")]})
            tx.insert(USERS, user.to_doc())
            self.write_audit(tx, "create", item.username, [item.unit], {"name": user.name, "roles": list(user.roles),
                                                                    "unit": item.unit})
        return None if item.password else password

    def edit(self, username: str, name: str, roles: tuple[str, ...], unit: str) -> User:
        """Change a user's name, roles and unit (within scope)."""
        before = self.user(username)
        item = UserInput(username, name, roles, unit)
        errors = self.problems(item, new=False)
        if username == self.actor.username and ADMIN_ROLE not in roles:
            errors.setdefault("roles", []).append(msg("您不能取消自己的管理员角色。", "You cannot take away your own admin role."))
        if errors:
            raise SubmissionError(errors)
        changes: dict[str, Any] = {}
        if name.strip() != before.name:
            changes["name"] = [before.name, name.strip()]
        if tuple(roles) != before.roles:
            changes["roles"] = [list(before.roles), list(roles)]
        if unit != before.org_unit:
            changes["unit"] = [before.org_unit, unit]

        def change(doc: Doc) -> None:
            doc.update(name=name.strip(), roles=list(roles), org_unit=unit)
        self._write(before, "edit", change, changes, units=[before.org_unit, unit])
        return self.user(username)

    def reset_password(self, username: str, password: str = "") -> str:
        """Set a temporary password (the admin's, or a generated one); returns it to be shown once."""
        user = self.user(username)
        problems = password_problems(password, username) if password else []
        if problems:
            raise SubmissionError({"password": problems})
        generated = not password
        password = password or generate_password()
        hashed = hash_password(password)
        # a reset ends every session: whoever knew the old password is logged out everywhere
        self._write(user, "reset_password", lambda doc: doc.update(password_hash=hashed, sessions=[]),
                    {"generated": generated})
        return password

    def set_active(self, username: str, active: bool) -> User:
        user = self.user(username)
        if username == self.actor.username and not active:
            raise NotAllowed(msg("您不能停用自己的账号。", "You cannot deactivate your own account."))
        if user.active == active:
            return user
        self._write(user, "reactivate" if active else "deactivate", lambda doc: doc.update(active=active, sessions=[]), {})
        return self.user(username)

    def _write(self, user: User, action: str, change: Any, details: dict[str, Any],
               units: Iterable[str] | None = None) -> None:
        with self.engine.store.transaction() as tx:
            doc = self.read.user_doc(user.username, tx)
            if doc is None:
                raise NotFound(msg(f"没有用户 {user.username}。", f"There is no user {user.username}."))
            change(doc)
            tx.replace(USERS, doc["id"], doc)
            self.write_audit(tx, action, user.username, units or [user.org_unit], details)

    def write_audit(self, tx: "Transaction", action: str, target: str, units: Iterable[str], details: dict[str, Any]) -> None:
        """One audit entry, in the transaction of the change it records. Never holds a password."""
        tx.insert(AUDIT, {"at": self.engine.clock().isoformat(timespec="seconds"), "by": self.actor.username,
                          "action": action, "target": target, "units": sorted(set(units)), "details": details})
