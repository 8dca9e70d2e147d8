"""Route × role × scope matrix (issue 14): every route of the Flask URL map, for every demo user, a user of another
community, and anonymous, answers as the engine's access rules say — never 500 — and no page, export, file download or
live-form answer shows a sensitive value to someone ``Access.may_see_sensitive`` says may not see it.

The instance is the shipped demo (``demo/cases``, played through real transitions on a TinyDB file) with a unique
marker planted in every sensitive field of every demo case (start forms and step forms, repeat columns too). URL
parameters are filled with real ids: one case per (workflow, state), every transition of the workflow on it, the
uploads of real submissions, every workflow id. The expected answer of each request is derived from the engine (can_see,
available_transitions, may_start, state_counts, may_contribute, can_rank, public_case, is_admin, ...), not listed.

POST routes are tried only where the answer must be a refusal (anonymous, or a user the rules do not allow), with a
valid CSRF token, and the store must not change (the live-form endpoints, which change nothing, for everyone): every step of a visible case the user may not take, and for cases
they may not see the first of each workflow. The figures (tried / failed) are printed at the end of the run.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
from ruamel.yaml import YAML

from engine.admin import is_admin
from engine.cases import CASES, Case
from engine.demo import load_demo
from engine.users import USERS, User, find_user, hash_password
from engine.web import create_app
from tests.conftest import Browser

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "demo1234"
#: People of another community (文峰社区) next to the demo's staff2 / secretary2 there: they see nothing of 徽州人家社区.
OUTSIDERS = [("resident_wf", "文峰居民", ["resident"], "wenfeng-g1"),
             ("grid_wf", "文峰网格员", ["grid_worker"], "wenfeng-g1"),
             ("partner_wf", "文峰共建单位", ["partner_unit"], "wenfeng")]
ANON = "(anonymous)"
PHONE_MARK, TEXT_MARK = "1990000{:04d}", "SENSM{:04d}Z"
MARKER = re.compile(r"1990000\d{4}|SENSM\d{4}Z|110105198001010\d\d[\dX]")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


# --------------------------------------------------------------------------- planting markers into the demo
def id_number(n: int) -> str:
    """A valid 18-digit ID number (checksum), unique per ``n`` (< 100)."""
    body = f"110105198001010{n:02d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


class Planter:
    def __init__(self, definitions: Any):
        self.definitions = definitions
        self.count = 0

    def marker(self, field: Any) -> str:
        self.count += 1
        kind = type(field.kind).__name__
        if kind == "PhoneType":
            return PHONE_MARK.format(self.count)
        if kind == "IdNumberType":
            return id_number(self.count % 100)
        assert kind == "TextType", f"no marker for a sensitive {kind} field {field.id!r}: add one"
        return TEXT_MARK.format(self.count)

    def fill(self, form: Any, values: dict[str, Any]) -> None:
        """A marker in every sensitive field of ``form`` (added if the scenario left it out) and column of its rows."""
        for f in form.fields:
            if f.sensitive:
                values[f.id] = self.marker(f)
            elif f.is_repeat and isinstance(values.get(f.id), list):
                for row in values[f.id]:
                    for sub in f.fields:
                        if sub.sensitive:
                            row[sub.id] = self.marker(sub)

    def step(self, wf: Any, step: dict[str, Any]) -> None:
        if "do" not in step:
            return
        t = next((t for t in wf.transitions() if t.id == step["do"]), None)
        if t is not None and t.form:
            form = self.definitions.form_of(wf, t.form)
            if any(f.sensitive or (f.is_repeat and any(s.sensitive for s in f.fields)) for f in form.fields):
                self.fill(form, step.setdefault("values", {}))

    def scenario_file(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            if "workflow" in item:
                wf = self.definitions.workflows[item["workflow"]]
                self.fill(self.definitions.forms[wf.start_form], item.setdefault("values", {}))
                for step in item.get("steps", []):
                    self.step(wf, step)
            elif "act" in item:
                self.step(self.definitions.workflows[items[item["act"]["case"] - 1]["workflow"]], item["act"])


# --------------------------------------------------------------------------- the world under test
class World:
    """The demo instance with markers, its users logged in, and what the engine says about each of them."""

    def __init__(self, tmp: Path):
        self.app = create_app({"TESTING": True, "SECRET_KEY": "matrix", "STORE": str(tmp / "civicflow.json"),
                               "UPLOADS": str(tmp / "uploads"), "DEFINITIONS": str(ROOT)}, start_timers=False)
        self.engine = self.app.extensions["civicflow"]
        self.defs = self.engine.definitions
        cases_dir = tmp / "cases"
        cases_dir.mkdir()
        planter = Planter(self.defs)
        yaml = YAML(typ="safe")
        for path in sorted((ROOT / "demo" / "cases").glob("*.yaml")):
            items = yaml.load(path.read_text(encoding="utf-8")) or []
            planter.scenario_file(items)
            # JSON is YAML too, and keeps every value as it was read (dates as their ISO text)
            (cases_dir / path.name).write_text(json.dumps(items, ensure_ascii=False, default=str), encoding="utf-8")
        shutil.copy(ROOT / "demo" / "users.yaml", tmp / "users.yaml")
        doc = yaml.load((ROOT / "demo" / "users.yaml").read_text(encoding="utf-8"))
        hashed = hash_password(PASSWORD)
        people = [(u["username"], u["name"], u["roles"], u["unit"]) for u in doc["users"]] + OUTSIDERS
        with self.engine.store.transaction() as tx:
            for username, name, roles, unit in people:
                tx.insert(USERS, User(username, name, tuple(roles), unit, hashed).to_doc())
        load_demo(self.engine, cases_dir)
        self.usernames = [p[0] for p in people]
        self.users: dict[str, User | None] = {u: find_user(self.engine.store, u) for u in self.usernames}
        self.users[ANON] = None
        self.browsers = {u: Browser(self.app).login(u) for u in self.usernames}
        self.browsers[ANON] = Browser(self.app)
        self.files = self._real_uploads()
        self.cases = [Case.from_doc(d, owned=True) for d in self.engine.store.search(CASES)]
        self.marker_case = self._markers()

    def _real_uploads(self) -> list[str]:
        """Uploads of real submissions through the pages: a problem report photo by a resident of 第一网格, one by
        a resident of the other community."""
        keys = []
        for who, grid in (("resident", "renjia-g1"), ("resident_wf", "wenfeng-g1")):
            response = self.browsers[who].post("/start/problem_report", {
                "category": "hazard", "description": "楼道堆放杂物，堵塞消防通道", "address": "1号楼楼道", "grid": grid,
                "reporter_type": "resident", "reporter_phone": PHONE_MARK.format(9000 + len(keys)),
                "photo": (io.BytesIO(PNG), "spot.png")}, content_type="multipart/form-data")
            assert response.status_code == 302, response.get_data(as_text=True)[:2000]
            cid = int(re.search(r"/cases/(\d+)", response.headers["Location"]).group(1))
            keys.append(self.engine.store.get(CASES, cid)["data"]["photo"]["key"])
        return keys

    def _markers(self) -> dict[str, int]:
        """Every planted marker stored in a sensitive field, with its case (each is unique to one case)."""
        found: dict[str, int] = {}
        for case in self.cases:
            wf = self.engine.spec_of(case)
            for form_id in wf.form_ids():
                for path in self.defs.form_of(wf, form_id).sensitive_paths():
                    for value in _values_at(case.data, path.split(".")):
                        if isinstance(value, str) and MARKER.fullmatch(value):
                            assert found.get(value, case.id) == case.id, f"marker {value} in two cases"
                            found[value] = case.id
        return found

    def sample_cases(self) -> list[Case]:
        """One case per (workflow, state), the newest: every state the demo reaches."""
        picked: dict[tuple[str, str], Case] = {}
        for case in self.cases:
            key = (case.workflow, case.state)
            if key not in picked or case.id > picked[key].id:
                picked[key] = case
        return sorted(picked.values(), key=lambda c: c.id)

    def fingerprint(self) -> tuple[Any, ...]:
        """What a refused POST must not change: every case's version and state, users, uploads, notifications."""
        store = self.engine.store
        cases = tuple(sorted((d["id"], d["version"], d["state"]) for d in store.search(CASES)))
        users = tuple(sorted((d["username"], tuple(d["roles"]), d.get("active", True)) for d in store.search(USERS)))
        return cases, users


def _values_at(value: Any, parts: list[str]) -> Iterator[Any]:
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        for item in value if isinstance(value, list) else []:
            yield from _values_at(item, rest)
    elif isinstance(value, dict) and head in value:
        yield from _values_at(value[head], rest)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("matrix"))
    yield w
    w.engine.store.close()


# --------------------------------------------------------------------------- what the rules say
LOGIN = {302}
PUBLIC_ENDPOINTS = {"auth.login", "governance.public", "governance.public_case", "health.healthz", "static"}


def expected_get(w: World, endpoint: str, args: dict[str, Any], user: User | None) -> set[int]:
    """The statuses the access rules allow for GET ``endpoint`` with ``args`` by ``user`` (None: anonymous)."""
    view = w.app.view_functions[endpoint]
    if endpoint.startswith("api."):
        return expected_api(w, endpoint, args, user)
    if getattr(view, "login_required", False) and user is None:
        return LOGIN
    e = w.engine
    wf = w.defs.workflows.get(args.get("workflow_id", ""))
    case = e.get(args["case_id"]) if "case_id" in args else None
    if endpoint in ("auth.login",):
        return {200, 302}
    if endpoint in ("health.healthz", "static", "governance.public", "cases.inbox", "cases.mine", "cases.start_list",
                    "cases.workflows", "cases.notifications", "dashboard.dashboard", "governance.points"):
        return {200}
    if endpoint == "governance.public_case":
        return {200} if e.public_case(case.id) is not None else {404}
    if endpoint in ("account.account", "delegation.copied"):
        return {200}
    if endpoint == "delegation.admin_list":  # every delegation of the admin's units
        return {200} if is_admin(user) else {403}
    if endpoint == "inbox.follow":  # a notification of one's own leads to its case (or says it is out of reach)
        note = w.engine.store.get("notifications", args["note_id"])
        return LOGIN if note is not None and note["to"] == user.username else {404}
    if endpoint.startswith("editor."):  # definitions are global: admins of the root unit only
        if not is_admin(user) or w.defs.org.parent(user.org_unit) is not None:
            return {403}
        if "kind" not in args:
            return {200}
        folder = {"workflow": "workflows", "form": "forms"}.get(args["kind"], "-")
        if endpoint == "editor.diff":
            return {404}  # without ?from= naming a kept version there is nothing to compare
        return {200} if (ROOT / folder / f"{args['name']}.yaml").is_file() else {404}
    if endpoint.startswith("webhooks."):
        if not is_admin(user):
            return {403}
        return {200} if "subscription_id" not in args else {404}  # the demo has no subscription
    if endpoint.startswith("admin."):
        if not is_admin(user):
            return {403}
        if "username" in args:
            return {200} if args["username"] in w.users else {404}
        return {200}
    if endpoint == "pickers.search":  # only for a user field of a form the person may fill in now
        return people_search_expected(w, args, user)
    if endpoint == "governance.points_overview":
        staff = {r for x in w.defs.workflows.values() for t in x.transitions() if t.points for r in t.roles}
        return {200} if set(user.roles) & (staff | {"community_staff", "community_secretary", "admin"}) else {403}
    if endpoint == "files.download":
        doc = e.read.upload(args["key"])
        ok = doc is not None and (doc["by"] == user.username
                                  or any(e.may_see_file(c, user, args["key"]) for c in e.read.mentioning(args["key"])))
        return {200} if ok else {404}
    if case is not None:
        if not e.can_see(case, user):
            return {404}
        state = e.state_of(case)
        if endpoint == "cases.show":
            return {200}
        if endpoint == "governance.certificate":
            return {200} if state.certificate else {404}
        if endpoint == "governance.contribute":
            return {200} if state.collect is not None and e.may_contribute(case, user)[0] else {409}
        if endpoint == "cases.step":
            wf_case = e.workflow_of(case)
            if not any(t.id == args["transition_id"] for t in wf_case.transitions()):
                return {409}
            return {200} if any(t.id == args["transition_id"] for t in e.available_transitions(case, user)) else {403}
        raise AssertionError(f"no rule for {endpoint}")
    if wf is None:
        return {404}
    may_open = e.may_start(wf, user) or bool(set(user.roles) & set(wf.roles))
    if endpoint == "cases.start":
        return {200} if e.may_start(wf, user) else {403}
    if endpoint in ("cases.list_cases", "export.export"):
        if endpoint == "export.export" and args["fmt"] not in ("csv", "xlsx"):
            return {404}
        counts = e.read.state_counts(user, wf)
        return {200} if any(counts.values()) or may_open else {403}
    if endpoint == "diagrams.workflow":
        return {200} if may_open else {403}
    if endpoint == "governance.ranking":
        return {404} if wf.ranking is None else {200} if e.can_rank(wf, user) else {403}
    if endpoint == "governance.targets":
        if not wf.targets:
            return {404}
        return {200} if set(user.roles) & (e.acting_roles(wf) | set(wf.start_roles)) else {403}
    raise AssertionError(f"no rule for {endpoint}")


def people_search_expected(w: World, args: dict[str, Any], user: User) -> set[int]:
    e = w.engine
    wf = w.defs.workflows.get(args.get("workflow", ""))
    if wf is None:
        return {404}
    if "case" not in args:
        start = w.defs.form_of(wf, wf.start_form).field(args["field"])
        return {200} if e.may_start(wf, user) and start is not None and start.kind.holds_user else {404}
    case = e.get(args["case"])
    if not e.can_see(case, user):
        return {404}
    forms = [t.form for t in e.available_transitions(case, user) if t.form]
    state = e.state_of(case)
    if state.collect is not None and e.may_contribute(case, user)[0]:
        forms.append(state.collect.form)
    fields = [w.defs.form_of(wf, f).field(args["field"]) for f in forms]
    return {200} if any(f is not None and f.kind.holds_user for f in fields) else {404}


def expected_api(w: World, endpoint: str, args: dict[str, Any], user: User | None) -> set[int]:
    """The API answers as the pages do (JSON): 401 without a login, 404 for what the user may not see."""
    if endpoint in ("api.docs", "api.openapi"):
        return {200}
    if user is None:
        return {401}
    e = w.engine
    if endpoint == "api.case":
        case = e.get(args["case_id"])
        return {200} if e.can_see(case, user) else {404}
    if endpoint in ("api.workflow", "api.list_cases"):
        wf = w.defs.workflows.get(args["workflow_id"])
        visible = wf is not None and (e.may_start(wf, user) or bool(set(user.roles) & set(wf.roles)))
        if endpoint == "api.workflow":
            return {200} if visible else {404}
        if wf is None:
            return {404}
        counts = e.read.state_counts(user, wf)
        return {200} if any(counts.values()) or visible else {403}
    if endpoint == "api.form":
        return {200} if any(args["form_id"] in wf.form_ids() and (e.may_start(wf, user) or set(user.roles) & set(wf.roles))
                            for wf in w.defs.workflows.values()) else {404}
    return {200}  # the caller's own inbox, cases, notifications, figures and the workflow list


# --------------------------------------------------------------------------- the URLs of the map, filled
def get_urls(w: World) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(endpoint, args, url)`` for every GET route of the URL map, its parameters filled with real ids."""
    cases = w.sample_cases()
    workflow_ids = sorted(w.defs.workflows) + ["no_such_workflow"]
    static = sorted(p.name for p in (ROOT / "static").iterdir() if p.is_file())[:1]
    with w.app.test_request_context():
        from flask import url_for
        for rule in sorted(w.app.url_map.iter_rules(), key=lambda r: r.rule):
            if "GET" not in rule.methods:
                continue
            names = set(rule.arguments)
            for args in _fill(w, rule.endpoint, names, cases, workflow_ids, static):
                yield rule.endpoint, args, url_for(rule.endpoint, **args)


def _fill(w: World, endpoint: str, names: set[str], cases: list[Case], workflow_ids: list[str],
          static: list[str]) -> Iterator[dict[str, Any]]:
    if endpoint == "pickers.search":  # its parameters are in the query string: the people a user field may name
        yield from _people_searches(w, cases)
    elif not names:
        yield {}
    elif names == {"case_id"}:
        # The case page for one case of every (workflow, state); the certificate, contribution and public pages for
        # the cases they are about, and the first case of each workflow besides (where they must refuse).
        relevant = {"cases.show": lambda c: True, "api.case": lambda c: True,
                    "governance.certificate": lambda c: w.engine.state_of(c).certificate,
                    "governance.contribute": lambda c: w.engine.state_of(c).collect is not None,
                    "governance.public_case": lambda c: w.engine.public_case(c.id) is not None}[endpoint]
        firsts = _first_per_workflow(cases)
        for c in cases:
            if relevant(c) or c.id in firsts:
                yield {"case_id": c.id}
    elif names == {"case_id", "transition_id"}:
        # Every transition of the state the case is in; for the first case of each workflow also one of another
        # state and an unknown one.
        firsts = _first_per_workflow(cases)
        for c in cases:
            wf = w.engine.workflow_of(c)
            here = [t.id for t in w.engine.state_of(c).transitions]
            more = [t.id for t in wf.transitions() if t.id not in here][:1] + ["no_such_step"] if c.id in firsts else []
            for tid in dict.fromkeys(here + more):
                yield {"case_id": c.id, "transition_id": tid}
    elif names == {"workflow_id"}:
        for wid in workflow_ids:
            yield {"workflow_id": wid}
    elif names == {"workflow_id", "fmt"}:
        for wid in workflow_ids:
            for fmt in ("csv", "xlsx"):
                yield {"workflow_id": wid, "fmt": fmt}
        yield {"workflow_id": workflow_ids[0], "fmt": "pdf"}
    elif names == {"key"}:
        for key in w.files + ["demo-no-image-1.jpg", "no-such-file"]:
            yield {"key": key}
    elif names == {"username"}:
        yield from ({"username": u} for u in ("resident", "staff2", "no_such_user"))
    elif names == {"filename"}:
        yield from ({"filename": f} for f in static)
    elif names == {"kind", "name"}:
        yield from ({"kind": k, "name": n} for k, n in (("workflow", "problem_report"), ("form", "micro_wish"),
                                                        ("workflow", "no_such_workflow"), ("workflows", "problem_report")))
    elif names == {"subscription_id"}:
        yield {"subscription_id": 1}
    elif names == {"note_id"}:
        notes = w.engine.store.search("notifications")
        yield from ({"note_id": n} for n in [d["id"] for d in notes[:1]] + [999999])
    elif names == {"form_id"}:
        yield from ({"form_id": f} for f in ("micro_wish", "problem_report", "no_such_form"))
    else:
        raise AssertionError(f"{endpoint}: no way to fill {sorted(names)}; add one here")


def _people_searches(w: World, cases: list[Case]) -> Iterator[dict[str, Any]]:
    """The people search for every user field of every workflow: from its start form, and on each sampled case of
    the workflow; with a field that is not a user field and an unknown workflow besides (where it must refuse)."""
    yield {}
    yield {"workflow": "no_such_workflow", "field": "recorder", "q": "赵"}
    for wid, wf in sorted(w.defs.workflows.items()):
        fields = [f.id for _form, f in w.engine.data_fields(wf) if f.kind.holds_user]
        for field in fields:
            yield {"workflow": wid, "field": field, "q": "赵"}
            for c in cases:
                if c.workflow == wid:
                    yield {"workflow": wid, "field": field, "q": "", "case": c.id}
        if fields:
            yield {"workflow": wid, "field": w.defs.form_of(wf, wf.start_form).fields[0].id, "q": "赵"}


def _first_per_workflow(cases: list[Case]) -> set[int]:
    firsts: dict[str, int] = {}
    for c in cases:
        firsts.setdefault(c.workflow, c.id)
    return set(firsts.values())


# --------------------------------------------------------------------------- the run
def body_text(response: Any) -> str:
    data = response.get_data()
    if data[:2] == b"PK":  # XLSX: the cells live in its XML parts
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = b"".join(z.read(n) for n in z.namelist())
    return data.decode("utf-8", "replace")


class Tally:
    def __init__(self) -> None:
        self.tried = Counter[str]()
        self.failed: list[str] = []
        self.marker_seen = Counter[str]()
        self.routes: set[str] = set()
        self.pairs: set[tuple[str, str]] = set()  # (endpoint, user) tried at least once

    def fail(self, text: str) -> None:
        self.failed.append(text)


def check_leaks(w: World, tally: Tally, who: str, url: str, text: str) -> None:
    user = w.users[who]
    for marker in set(MARKER.findall(text)):
        cid = w.marker_case.get(marker)
        if cid is None:
            continue  # a marker value not stored (dropped by a show_if): nothing to check
        case = next(c for c in w.cases if c.id == cid)
        if user is not None and w.engine.may_see_sensitive(case, user):
            tally.marker_seen["allowed"] += 1
        else:
            tally.fail(f"LEAK {who} {url}: sensitive value {marker} of case #{cid} ({case.workflow})")


def run_gets(w: World, tally: Tally) -> None:
    urls = list(get_urls(w))
    for who in list(w.browsers):
        browser, user = w.browsers[who], w.users[who]
        for endpoint, args, url in urls:
            tally.routes.add(endpoint)
            tally.pairs.add((endpoint, who))
            expected = expected_get(w, endpoint, args, user)
            tally.tried["get"] += 1
            try:
                response = browser.get(url)
            except Exception as exc:  # noqa: BLE001 - TESTING propagates what would be a 500
                tally.fail(f"500 {who} GET {url}: {type(exc).__name__}: {exc}")
                continue
            status = response.status_code
            if status not in expected:
                tally.fail(f"{status} {who} GET {url}: expected {sorted(expected)}")
                continue
            if status == 302 and expected == LOGIN and "/login" not in response.headers.get("Location", "") \
                    and endpoint != "inbox.follow":  # a notification's link redirects to its case
                tally.fail(f"302 {who} GET {url}: not to the login page ({response.headers.get('Location')})")
            check_leaks(w, tally, who, url, body_text(response))


def _token(browser: Browser, anonymous: bool) -> str:
    page = browser.get("/login" if anonymous else "/").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token"
    return found.group(1)


def refused_posts(w: World, who: str) -> Iterator[tuple[str, str, set[int], dict[str, Any]]]:
    """``(endpoint, url, expected statuses, data)`` of POSTs the rules refuse this user (never one they allow that
    would change something), and the live-form POSTs (which change nothing) for everyone."""
    user = w.users[who]
    e = w.engine
    login = LOGIN if user is None else None
    cases = w.sample_cases()
    firsts = _first_per_workflow(cases)
    for c in cases:
        visible = user is not None and e.can_see(c, user)
        allowed = {t.id for t in e.available_transitions(c, user)} if visible else set()
        if not visible and c.id not in firsts:
            continue  # a case one may not see refuses alike whatever the step: the first of each workflow stands in
        for t in e.state_of(c).transitions:  # the live form of a step changes nothing: tried for everyone
            live = login or ({404} if not visible or t.form is None else {200} if t.id in allowed else {403})
            yield ("cases.step_fields", f"/cases/{c.id}/do/{t.id}/fields", live, {})
        roles = e.roles_for(c, user) if visible else set()
        for t in e.state_of(c).transitions:
            if t.id not in allowed:
                # holding a role of the step but failing its guard is "not now" (409, with the guard's reason)
                refused = {403, 409} if set(t.roles) & roles else {403}
                yield ("cases.step", f"/cases/{c.id}/do/{t.id}", login or (refused if visible else {404}),
                       {"version": str(c.version), "comment": "matrix", "assignees": "partner"})
        yield from task_move_posts(w, c, user, visible, login)
        state = e.state_of(c)
        if not (visible and state.collect is not None and e.may_contribute(c, user)[0]):
            yield ("governance.contribute", f"/cases/{c.id}/contribute", login or ({409} if visible else {404}), {})
        if not visible:
            yield ("governance.recuse", f"/cases/{c.id}/recuse", login or {404}, {"reason": "matrix"})
        # 催办 / 抄送: refused to those who may not see the case, and to those the rules do not let urge or copy in
        if not visible or (not state.final and e.urge_status(c, user) is None):
            yield ("delegation.urge", f"/cases/{c.id}/urge", login or ({403} if visible else {404}), {})
        if not visible or not e.may_copy_in(c, user):
            yield ("delegation.copy_in", f"/cases/{c.id}/cc", login or ({409} if visible and state.final else
                                                                      {403} if visible else {404}), {"cc": "grid"})
        if user is None and e.public_case(c.id) is not None:
            yield ("governance.public_case", f"/public/{c.id}", LOGIN, {"reason": "矩阵测试的异议理由，足够长"})
    for wid, wf in sorted(w.defs.workflows.items()):
        if user is None or not e.may_start(wf, user):
            yield ("cases.start", f"/start/{wid}", login or {403}, {})
        yield ("cases.start_fields", f"/start/{wid}/fields", login or ({200} if e.may_start(wf, user) else {403}), {})
        if wf.ranking is not None and (user is None or not e.can_rank(wf, user)):
            yield ("governance.ranking", f"/workflows/{wid}/ranking", login or {403}, {})
    # 委托代理: a delegation nobody can take is refused with the form again; ending one that does not exist changes nothing
    yield ("delegation.add", "/account/delegations", login or {422}, {"delegate": "no_such_user", "from": "2026-11-27",
                                                                      "to": "2026-11-28"})
    yield ("delegation.end", "/account/delegations/999/end", login or {302}, {})
    if not is_admin(user):
        for url in ("/admin/users/new", "/admin/import", "/admin/users/resident", "/admin/users/resident/password",
                    "/admin/users/resident/deactivate", "/admin/users/resident/reactivate"):
            yield ("admin", url, login or {403}, {"username": "x", "name": "x", "roles": "admin", "unit": "huizhou",
                                                  "password": "matrix-password-1"})


#: 转交 / 加签 / 退回 / 撤回 (engine.web.taskmoves): path, the move's edge ``via``, what is posted (never a valid choice)
TASK_MOVES = {"taskmoves.transfer": ("transfer", "transfer", {"to": "matrix_nobody"}),
              "taskmoves.add_approver": ("add-approver", "add_approver", {"who": "matrix_nobody", "position": "before"}),
              "taskmoves.send_back": ("send-back", "return", {"target": "", "comment": ""}),
              "taskmoves.withdraw": ("withdraw", "withdraw", {})}


def task_move_posts(w: World, c: Case, user: User | None, visible: bool,
                    login: set[int] | None) -> Iterator[tuple[str, str, set[int], dict[str, Any]]]:
    """The moves on one's own task, as the rules answer them: 404 for a case one may not see, 409 where the step
    has no such move, 403 for someone who may not take it, 422 for the invalid choice posted (a withdrawal the
    initiator may take is not posted: it would go through; once someone else acted it is 409)."""
    from engine.mechanics import taskmoves

    e = w.engine
    kinds = {x.via for x in e.workflow_of(c).edges_from(c.state) if x.kind == "move"}
    for endpoint, (path, via, data) in TASK_MOVES.items():
        if login or not visible:
            expected = login or {404}
        elif via not in kinds:
            expected = {409}
        elif not {"transfer": lambda: taskmoves.holds(e, c, user.username) is not None,
                  "add_approver": lambda: taskmoves.seat_held(c, user.username) is not None,
                  "return": lambda: taskmoves.may_act(e, c, user),
                  "withdraw": lambda: user.username == c.created_by}[via]():
            expected = {403}
        elif via == "withdraw":
            if taskmoves.acted_by_others(c) is None:
                continue
            expected = {409}
        else:
            expected = {422}
        yield (endpoint, f"/cases/{c.id}/{path}", expected, {"version": str(c.version), **data})


def run_posts(w: World, tally: Tally) -> None:
    before = w.fingerprint()
    for who in list(w.browsers):
        browser = w.browsers[who]
        token = _token(browser, w.users[who] is None)
        for endpoint, url, expected, data in refused_posts(w, who):
            tally.routes.add(endpoint)
            tally.pairs.add((endpoint + " POST", who))
            tally.tried["post"] += 1
            try:
                response = browser.client.post(url, data={**data, "csrf_token": token})
            except Exception as exc:  # noqa: BLE001
                tally.fail(f"500 {who} POST {url}: {type(exc).__name__}: {exc}")
                continue
            if response.status_code not in expected:
                tally.fail(f"{response.status_code} {who} POST {url}: expected {sorted(expected)}")
            check_leaks(w, tally, who, url, body_text(response))
    assert w.fingerprint() == before, "a refused POST changed the store"


def test_every_route_for_every_user_answers_as_the_rules_say(world: World, capsys: pytest.CaptureFixture[str]):
    tally = Tally()
    run_gets(world, tally)
    run_posts(world, tally)
    users = len(world.browsers)
    with capsys.disabled():
        print(f"\nroute matrix: {len(tally.routes)} routes, {users} users (incl. anonymous and "
              f"{len(OUTSIDERS) + 2} of another community), {len(tally.pairs)} route x user pairs, "
              f"{len(world.marker_case)} planted sensitive markers; "
              f"tried {tally.tried['get']} GET + {tally.tried['post']} POST (refused, or live forms) = {sum(tally.tried.values())}, "
              f"failed {len(tally.failed)}; sensitive values shown to allowed users {tally.marker_seen['allowed']} times")
        for line in tally.failed[:40]:
            print("  " + line)
    assert len(world.marker_case) >= 30, "markers were not planted"
    assert tally.marker_seen["allowed"] > 0, "no page showed a planted value to anyone: the leak check cannot fail"
    assert not tally.failed, f"{len(tally.failed)} of {sum(tally.tried.values())} failed, first: {tally.failed[:5]}"


def test_the_matrix_covers_every_route_of_the_url_map(world: World):
    """A route added later must be filled and given a rule here, not silently skipped."""
    covered = {endpoint for endpoint, _, _ in get_urls(world)}
    gets = {r.endpoint for r in world.app.url_map.iter_rules() if "GET" in r.methods}
    assert gets <= covered, f"routes without a matrix entry: {sorted(gets - covered)}"


def test_partner_never_sees_a_problem_reports_sensitive_values(world: World):
    """The policy itself, not just its use: the partner organisation dispatched to problem reports gets no phone of a
    reporter or a party, and the grid worker of the grid does."""
    e, partner, grid = world.engine, world.users["partner"], world.users["grid"]
    reports = [c for c in world.cases if c.workflow == "problem_report"]
    dispatched = [c for c in reports if "partner" in c.assignees]
    assert dispatched, "the demo dispatches problem reports to the partner"
    assert all(e.can_see(c, partner) and not e.may_see_sensitive(c, partner) for c in dispatched)
    assert any(e.may_see_sensitive(c, grid) for c in reports if c.org_unit == "renjia-g1")
    orders = [c for c in world.cases if c.workflow == "service_order" and c.assignees]
    assert orders and all(e.may_see_sensitive(c, find_user(e.store, c.assignees[0])) for c in orders)
