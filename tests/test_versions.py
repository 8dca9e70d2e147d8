"""Versions that running cases keep: a case runs on the version it started with, a change without a new
version is a lint error, and a migration is checked (and refused with the case ids) before it happens.

Each test writes version 1 of a small permit workflow, starts cases on it, then rewrites the files as
version 2 over the same store (a TinyDB file where it matters: kept versions outlive a restart).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine import migration
from engine.cases import CASES, Case
from engine.loader import load_definitions
from engine.runtime import Engine
from engine.store import MemoryStore, TinyDBStore
from engine.users import User, find_user
from engine.versions import DEFINITIONS
from engine.web import create_app
from engine.web.cli import cli

from .conftest import ROOT, Browser, add_users, started

FORM_V1 = """\
id: permit_request
version: 1
title: {zh: 许可申请, en: Permit request}
fields:
  - {id: subject, type: text, label: {zh: 事由, en: Subject}, required: true}
  - {id: phone_no, type: text, label: {zh: 电话, en: Phone}}
"""

WORKFLOW_V1 = """\
id: permit
version: 1
title: {zh: 许可, en: Permit}
start: {form: permit_request, roles: [resident], title: subject}
roles: [resident, community_staff, community_secretary]
initial: submitted
states:
  submitted:
    title: {zh: 已提交, en: Submitted}
    transitions:
      - {id: send, to: review, label: {zh: 送审, en: Send to review}, roles: [community_staff]}
  review:
    title: {zh: 审核中, en: In review}
    transitions:
      - {id: approve, to: done, label: {zh: 书记批准, en: Secretary approves}, roles: [community_secretary]}
  done:
    title: {zh: 完成, en: Done}
    final: true
"""

# Version 2: no review any more (staff decide at once), and the phone is now asked for (as "phone").
FORM_V2 = FORM_V1.replace("version: 1", "version: 2").replace(
    "  - {id: phone_no, type: text, label: {zh: 电话, en: Phone}}",
    "  - {id: phone, type: text, label: {zh: 电话, en: Phone}, required: true}")

WORKFLOW_V2 = """\
id: permit
version: 2
title: {zh: 许可, en: Permit}
start: {form: permit_request, roles: [resident], title: subject}
roles: [resident, community_staff, community_secretary]
initial: submitted
states:
  submitted:
    title: {zh: 已提交, en: Submitted}
    transitions:
      - {id: decide, to: done, label: {zh: 直接办结, en: Decide at once}, roles: [community_staff]}
  done:
    title: {zh: 完成, en: Done}
    final: true
"""

MIGRATE = """\
migrate:
  from: 1
  states: {review: submitted}
  fields: {phone_no: phone}
"""


def write(root: Path, workflow: str, form: str) -> Path:
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "forms").mkdir(parents=True, exist_ok=True)
    (root / "workflows" / "permit.yaml").write_text(workflow, encoding="utf-8")
    (root / "forms" / "permit_request.yaml").write_text(form, encoding="utf-8")
    if not (root / "org").exists():
        shutil.copytree(ROOT / "org", root / "org")
    return root


def engine_on(root: Path, store: Any) -> Engine:
    return Engine(load_definitions(root), store)


def user(engine: Engine, name: str) -> User:
    found = find_user(engine.store, name)
    assert found is not None
    return found


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(tmp_path / "defs", WORKFLOW_V1, FORM_V1)


@pytest.fixture(params=["memory", "tinydb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = MemoryStore() if request.param == "memory" else TinyDBStore(str(tmp_path / "store.json"))
    add_users(store)
    yield store
    store.close()


def start_v1_cases(root: Path, store: Any) -> tuple[int, int, int]:
    """Three cases on version 1: one waiting in 'submitted', one in 'review' (gone in version 2), one done."""
    v1 = engine_on(root, store)
    resident = user(v1, "resident")
    ids = [v1.start("permit", resident, {"subject": f"s{i}", "phone_no": f"1390000000{i}"}).id for i in range(3)]
    for cid in ids[1:]:
        v1.fire(cid, "send", user(v1, "staff"))
    v1.fire(ids[2], "approve", user(v1, "secretary"))
    return ids[0], ids[1], ids[2]


# --------------------------------------------------------------------------- a case keeps its version

def test_a_case_started_on_v1_finishes_on_v1_after_v2_removes_its_state(root: Path, store: Any):
    waiting, in_review, _ = start_v1_cases(root, store)
    write(root, WORKFLOW_V2, FORM_V2)
    v2 = engine_on(root, store)
    case = v2.get(in_review)
    assert case.workflow_version == 1 and v2.workflow_of(case).version == 1 and "review" in v2.workflow_of(case).states
    secretary = user(v2, "secretary")
    assert [t.id for t in v2.available_transitions(case, secretary)] == ["approve"]
    assert [c.id for c in v2.inbox(secretary)] == [in_review]  # waits for a role v2 no longer uses here
    done = v2.fire(in_review, "approve", secretary)
    assert done.state == "done" and done.workflow_version == 1
    # the v1 case still waiting in 'submitted' moves along v1's edge, not v2's
    assert [t.id for t in v2.available_transitions(v2.get(waiting), user(v2, "staff"))] == ["send"]


def test_a_new_case_starts_on_v2_and_needs_v2s_form(root: Path, store: Any):
    start_v1_cases(root, store)
    write(root, WORKFLOW_V2, FORM_V2)
    v2 = engine_on(root, store)
    resident = user(v2, "resident")
    with pytest.raises(Exception) as refused:
        v2.start("permit", resident, {"subject": "new"})
    assert "phone" in str(refused.value)
    case = v2.start("permit", resident, {"subject": "new", "phone": "13900000009"})
    assert case.workflow_version == 2
    assert [t.id for t in v2.available_transitions(case, user(v2, "staff"))] == ["decide"]
    assert [(v, running) for v, _, running in v2.versions("permit")] == [(1, 2), (2, 1)]
    digests = [d for _, d, _ in v2.versions("permit")]
    assert all(len(d) == 64 for d in digests) and digests[0] != digests[1]


def test_kept_versions_survive_a_restart_of_a_file_store(root: Path, tmp_path: Path):
    path = str(tmp_path / "kept.json")
    store = TinyDBStore(path)
    add_users(store)
    _, in_review, _ = start_v1_cases(root, store)
    store.close()
    write(root, WORKFLOW_V2, FORM_V2)
    reopened = TinyDBStore(path)
    try:
        kept = reopened.search(DEFINITIONS)
        assert [(d["workflow"], d["version"]) for d in kept] == [("permit", 1)]
        assert {f["file"] for f in kept[0]["files"]} == {"workflows/permit.yaml", "forms/permit_request.yaml"}
        v2 = engine_on(root, reopened)
        assert v2.workflow_of(v2.get(in_review)).states["review"].title["en"] == "In review"
        assert v2.fire(in_review, "approve", user(v2, "secretary")).state == "done"
    finally:
        reopened.close()


def test_the_same_texts_are_kept_once(root: Path, store: Any):
    start_v1_cases(root, store)
    engine_on(root, store).start("permit", user(engine_on(root, store), "resident"), {"subject": "again"})
    assert len(store.search(DEFINITIONS)) == 1


def test_a_kept_version_loads_with_its_problems_at_virtual_file_lines(root: Path):
    from engine.errors import DefinitionError
    from engine.loader import load_workflow_text

    base = load_definitions(root)
    broken = WORKFLOW_V1.replace("to: done", "to: dnoe")
    with pytest.raises(DefinitionError) as exc:
        load_workflow_text(("workflows/permit.yaml@v1", broken), [("forms/permit_request.yaml@v1", FORM_V1)], base)
    [problem] = exc.value.problems
    assert str(problem).startswith("workflows/permit.yaml@v1:15:27: states.review.transitions[0].to:")
    assert "unknown state 'dnoe'" in problem.message


def test_the_read_model_stays_exact_with_mixed_versions(root: Path, store: Any):
    start_v1_cases(root, store)
    write(root, WORKFLOW_V2, FORM_V2)
    v2 = engine_on(root, store)
    v2.start("permit", user(v2, "resident"), {"subject": "new", "phone": "1"})
    cases = [Case.from_doc(d) for d in store.search(CASES)]
    wf = v2.definitions.workflows["permit"]
    people = [user(v2, n) for n in ("resident", "staff", "secretary", "staff2", "grid", "admin")]
    newest = lambda found: [c.id for c in sorted(found, key=lambda c: (c.updated_at, c.id), reverse=True)]  # noqa: E731
    for person in people:
        assert [c.id for c in v2.inbox(person)] == newest([c for c in cases if v2.waits_for(c, person)]), person.username
        visible = [c for c in cases if v2.can_see(c, person)]
        assert [c.id for c in v2.cases(person, "permit")] == newest(visible), person.username
        expected = {s: sum(1 for c in visible if c.state == s) for s in wf.states}
        expected.update({s: n for s in {c.state for c in visible} - set(wf.states)
                         if (n := sum(1 for c in visible if c.state == s))})
        assert v2.read.state_counts(person, wf) == expected, person.username
    assert v2.read.state_counts(user(v2, "staff"), wf)["review"] == 1
    assert v2.inbox(user(v2, "secretary"))  # the comparison is not between empty lists


# --------------------------------------------------------------------------- through the web pages

def test_the_case_page_shows_v1s_states_and_buttons(root: Path, tmp_path: Path, clock: Any):
    store_path = str(tmp_path / "web.json")
    config = {"TESTING": True, "SECRET_KEY": "t", "STORE": store_path, "UPLOADS": str(tmp_path / "up"),
              "DEFINITIONS": str(root), "CLOCK": clock}
    app = create_app(config, start_timers=False)
    add_users(app.extensions["civicflow"].store)
    resident, staff = Browser(app).login("resident"), Browser(app).login("staff")
    cid = started(resident.post("/start/permit", {"subject": "v1 case", "phone_no": "1"}))
    page = staff.get(f"/cases/{cid}").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    staff.post(f"/cases/{cid}/do/send", {"version": version, "comment": ""}, page=f"/cases/{cid}")
    app.extensions["civicflow"].store.close()

    write(root, WORKFLOW_V2, FORM_V2)
    app = create_app(config, start_timers=False)
    try:
        secretary = Browser(app).login("secretary")
        page = secretary.get(f"/cases/{cid}").get_data(as_text=True)
        assert "In review" in page or "审核中" in page
        assert "/do/approve" in page and "/do/decide" not in page
        inbox = secretary.get("/").get_data(as_text=True)
        assert f"#{cid} v1 case" in inbox and '<span class="state">审核中</span>' in inbox
        listing = Browser(app).login("staff").get("/workflows/permit").get_data(as_text=True)
        assert f"#{cid}</a>" in listing and "审核中 (1)" in listing  # its state's title and count, from v1
        only = Browser(app).login("staff").get("/workflows/permit?state=review").get_data(as_text=True)
        assert f"#{cid}</a>" in only
        page = secretary.get(f"/cases/{cid}").get_data(as_text=True)
        version = re.search(r'name="version" value="(\d+)"', page).group(1)
        response = secretary.post(f"/cases/{cid}/do/approve", {"version": version, "comment": ""}, page=f"/cases/{cid}")
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        engine = app.extensions["civicflow"]
        assert engine.get(cid).state == "done" and engine.get(cid).workflow_version == 1
        new = started(Browser(app).login("resident").post("/start/permit", {"subject": "v2 case", "phone": "2"}))
        page = Browser(app).login("staff").get(f"/cases/{new}").get_data(as_text=True)
        assert "/do/decide" in page and "/do/send" not in page
    finally:
        app.extensions["civicflow"].store.close()


# --------------------------------------------------------------------------- lint against the live store

def test_lint_catches_a_change_without_a_new_version(root: Path, store: Any):
    start_v1_cases(root, store)
    unbumped = WORKFLOW_V2.replace("version: 2", "version: 1")
    write(root, unbumped, FORM_V2.replace("version: 2", "version: 1"))
    [problem] = migration.lint(engine_on(root, store))
    assert (problem.file, problem.line, problem.path) == ("workflows/permit.yaml", 2, "version")
    for said in ("state 'review' removed", "transition 'submitted.decide' added",
                 "field 'phone' added to form 'permit_request'", "field 'phone_no' removed from form 'permit_request'"):
        assert said in problem.message
    assert problem.hint == "bump version to 2"


def test_bumping_the_version_is_enough(root: Path, store: Any):
    start_v1_cases(root, store)
    write(root, WORKFLOW_V2, FORM_V2)
    assert migration.lint(engine_on(root, store)) == []


def test_a_change_of_labels_only_needs_no_new_version(root: Path, store: Any):
    start_v1_cases(root, store)
    write(root, WORKFLOW_V1.replace("In review", "Being reviewed"), FORM_V1)
    assert migration.lint(engine_on(root, store)) == []


def test_civicflow_lint_checks_against_the_store(root: Path, tmp_path: Path):
    path = tmp_path / "lint.json"
    store = TinyDBStore(str(path))
    add_users(store)
    start_v1_cases(root, store)
    store.close()
    write(root, WORKFLOW_V2.replace("version: 2", "version: 1"), FORM_V1)
    runner = CliRunner()
    result = runner.invoke(cli, ["lint", str(root), "--store", str(path)])
    assert result.exit_code == 1, result.output
    assert f"{root / 'workflows' / 'permit.yaml'}:2:10: version:" in result.output
    assert "state 'review' removed" in result.output and "bump version to 2" in result.output
    assert runner.invoke(cli, ["lint", str(root)]).exit_code == 0  # without a store: the files alone are fine


# --------------------------------------------------------------------------- migration

def test_lint_lists_the_cases_a_migration_would_strand(root: Path, store: Any):
    waiting, in_review, _ = start_v1_cases(root, store)
    write(root, WORKFLOW_V2 + "migrate: {from: 1}\n", FORM_V2)
    [problem] = migration.lint(engine_on(root, store))
    assert problem.path == "migrate.from" and problem.line == 15
    assert f"#{in_review} (state 'review' has no place in version 2" in problem.message
    assert "required field 'phone'" in problem.message and f"#{waiting} " in problem.message
    assert "2 running case(s) of version 1 would be stranded" in problem.message


def test_lint_names_old_states_and_fields_the_old_version_does_not_have(root: Path, store: Any):
    start_v1_cases(root, store)
    write(root, WORKFLOW_V2 + MIGRATE.replace("review:", "reviw:"), FORM_V2)
    problems = migration.lint(engine_on(root, store))
    assert any(p.path == "migrate.states.reviw" and "state 'reviw' is not a state of version 1" in p.message
               for p in problems), problems


def test_a_migrate_target_that_is_no_state_is_a_load_error(root: Path):
    from engine.errors import DefinitionError

    write(root, WORKFLOW_V2 + MIGRATE.replace("review: submitted", "review: nowhere"), FORM_V2)
    with pytest.raises(DefinitionError) as exc:
        load_definitions(root)
    assert any(p.path == "migrate.states.review" and "unknown state 'nowhere'" in p.message for p in exc.value.problems)


def test_a_dry_run_lists_the_changes_and_changes_nothing(root: Path, store: Any):
    waiting, in_review, done = start_v1_cases(root, store)
    write(root, WORKFLOW_V2 + MIGRATE, FORM_V2)
    v2 = engine_on(root, store)
    before = store.search(CASES)
    found = migration.plan(v2, "permit")
    assert not found.stranded
    assert [m.describe(2) for m in found.moves] == [
        f"#{waiting} v1 -> v2: stays in submitted; field phone_no -> phone",
        f"#{in_review} v1 -> v2: state review -> submitted; field phone_no -> phone"]
    assert store.search(CASES) == before  # the finished case is not touched either


def test_civicflow_migrate_applies_it_with_a_history_entry(root: Path, tmp_path: Path, clock: Any):
    path = tmp_path / "migrate.json"
    store = TinyDBStore(str(path))
    add_users(store)
    waiting, in_review, done = start_v1_cases(root, store)
    store.close()
    write(root, WORKFLOW_V2 + MIGRATE, FORM_V2)
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": str(path), "UPLOADS": str(tmp_path / "up"),
                      "DEFINITIONS": str(root), "CLOCK": clock}, start_timers=False)
    try:
        runner = app.test_cli_runner()
        dry = runner.invoke(args=["migrate", "permit", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert f"#{in_review} v1 -> v2: state review -> submitted" in dry.output and "nothing changed" in dry.output
        engine = app.extensions["civicflow"]
        assert engine.get(in_review).workflow_version == 1
        result = runner.invoke(args=["migrate", "permit"])
        assert result.exit_code == 0, result.output
        assert "2 case(s) moved to version 2" in result.output
        case = engine.get(in_review)
        assert (case.workflow_version, case.state, case.data.get("phone")) == (2, "submitted", "13900000001")
        entry = case.history[-1]
        assert (entry["action"], entry["from"], entry["to"]) == ("migrate", "review", "submitted")
        assert "v1 -> v2" in entry["comment"] and entry["label"]["en"] == "Moved to version 2"
        assert [t.id for t in engine.available_transitions(case, user(engine, "staff"))] == ["decide"]
        assert engine.get(done).workflow_version == 1  # finished: stays on its version
        assert [(v, n) for v, _, n in engine.versions("permit")] == [(1, 0), (2, 2)]
        again = runner.invoke(args=["migrate", "permit", "--dry-run"])
        assert "0 case(s) would move" in again.output
    finally:
        app.extensions["civicflow"].store.close()


def test_a_migration_that_would_strand_a_case_is_refused_with_the_case_ids(root: Path, store: Any):
    waiting, in_review, _ = start_v1_cases(root, store)
    write(root, WORKFLOW_V2 + "migrate: {from: 1, fields: {phone_no: phone}}\n", FORM_V2)
    v2 = engine_on(root, store)
    before = store.search(CASES)
    with pytest.raises(migration.MigrationRefused) as refused:
        migration.apply(v2, "permit")
    assert [m.case_id for m in refused.value.plan.stranded] == [in_review]
    assert f"#{in_review}" in str(refused.value) and "nothing was changed" in str(refused.value)
    assert store.search(CASES) == before  # not even the case that could move (all or nothing)


def test_civicflow_migrate_refuses_without_a_traceback(root: Path, tmp_path: Path, clock: Any):
    path = tmp_path / "refuse.json"
    store = TinyDBStore(str(path))
    add_users(store)
    _, in_review, _ = start_v1_cases(root, store)
    store.close()
    write(root, WORKFLOW_V2 + "migrate: {from: 1, fields: {phone_no: phone}}\n", FORM_V2)
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": str(path), "UPLOADS": str(tmp_path / "up"),
                      "DEFINITIONS": str(root), "CLOCK": clock}, start_timers=False)
    try:
        runner = app.test_cli_runner()
        result = runner.invoke(args=["migrate", "permit"])
        assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
        assert f"#{in_review} v1 -> v2: stranded: state 'review' has no place in version 2" in result.output
        assert "nothing changed" in result.output
        assert app.extensions["civicflow"].get(in_review).workflow_version == 1
        unknown = runner.invoke(args=["migrate", "nope"])
        assert unknown.exit_code == 2 and "unknown workflow 'nope'" in unknown.output
    finally:
        app.extensions["civicflow"].store.close()


def test_a_kept_version_that_no_longer_loads_is_a_lint_problem_at_its_virtual_file(root: Path, store: Any):
    _, in_review, _ = start_v1_cases(root, store)
    with store.transaction() as tx:  # as if an action the old version names had been removed since
        [doc] = tx.search(DEFINITIONS)
        for f in doc["files"]:
            if f["kind"] == "workflow":
                f["text"] = f["text"].replace("roles: [community_secretary]}",
                                              "roles: [community_secretary], actions: [gone]}")
        tx.replace(DEFINITIONS, doc["id"], doc)
    write(root, WORKFLOW_V2, FORM_V2)
    v2 = engine_on(root, store)
    problems = migration.lint(v2)
    assert any(p.file == "workflows/permit.yaml@v1" and "unknown action 'gone'" in p.message for p in problems), problems
    assert v2.workflow_of(v2.get(in_review)).version == 2  # runs on the current files, as before versions were kept
