"""Old spellings of the DSL (issue 12) keep loading, to the same spec as the new ones, and ``civicflow lint``
warns at each old key (file:line:col, the new spelling as the hint); the shipped definitions use none.

tests/data/old_spelling/*.yaml are workflows of tests/data/valid/governance as they were written before:
each starts with ``# warn: line:col: path: message (hint)`` lines, the warnings it must give, in order.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from engine import migration
from engine.actions import ACTIONS
from engine.cases import CASES
from engine.loader import Loader, lint, load_definitions
from engine.runtime import Engine
from engine.versions import DEFINITIONS
from engine.yamlsource import plain

from .conftest import governance_dir
from .test_cli import civicflow
from .test_versions import FORM_V1, WORKFLOW_V1, engine_on, store, user, write  # noqa: F401 - store: the fixture

DATA = Path(__file__).parent / "data"
OLD = sorted((DATA / "old_spelling").glob("*.yaml"))
REPO = Path(__file__).parent.parent


def expected_warnings(path: Path) -> list[str]:
    return [m.group(1) for line in path.read_text(encoding="utf-8").splitlines()
            if (m := re.fullmatch(r"# warn: (.+)", line))]


def shown(w: Any) -> str:
    return f"{w.line}:{w.col}: {w.path}: {w.message}" + (f" ({w.hint})" if w.hint else "")


@pytest.mark.parametrize("path", OLD, ids=[p.stem for p in OLD])
def test_an_old_spelling_loads_to_the_same_spec_and_lint_warns_at_each_old_key(path: Path, tmp_path: Path) -> None:
    new_root, old_root = governance_dir(tmp_path / "new"), governance_dir(tmp_path / "old")
    shutil.copy(path, old_root / "workflows" / path.name)
    new, old = load_definitions(new_root), load_definitions(old_root)
    assert old.workflows[path.stem] == new.workflows[path.stem]
    assert new.warnings == ()
    expected = expected_warnings(path)
    assert expected and [shown(w) for w in old.warnings] == expected
    assert all(w.warning and w.file == f"workflows/{path.name}" for w in old.warnings)
    assert str(old.warnings[0]).startswith(f"workflows/{path.name}:{old.warnings[0].line}:")
    assert ": warning: " in str(old.warnings[0]) and "write " in old.warnings[0].hint
    assert lint(old_root) == []  # warnings only when asked for: the definitions load
    assert lint(old_root, warnings=True) == list(old.warnings)


# ------------------------------------------------------------------ every shipped workflow, in the old spelling

def to_old(data: dict[str, Any]) -> int:
    """Write ``data`` (a workflow) back in the spellings used before issue 12, in place; how many keys changed.
    Written out here on its own, not from engine.spelling's table, so the two check each other."""
    changed = 0

    def rename(mapping: dict[str, Any] | None, new: str, old: str) -> None:
        nonlocal changed
        if mapping is not None and new in mapping:
            mapping[old] = mapping.pop(new)
            changed += 1

    for state in data["states"].values():
        if "timeout" in state:
            timeout = state.pop("timeout")
            state["after"] = f"{timeout['after']} -> {timeout['then']}"
            changed += 1
        rename(state, "public_record", "publish")
        rename(state.get("deadline"), "after", "within")
        rename(state.get("notice"), "after", "duration")
        rename(state.get("notice"), "then", "on_expiry")
        rename(state.get("collect"), "after", "deadline")
        rename(state.get("collect"), "then", "on_deadline")
        for t in state.get("transitions", []):
            rename(t, "when", "guard")
    return changed


SHIPPED = sorted((REPO / "workflows").glob("*.yaml"))


@pytest.fixture(scope="module")
def shipped() -> Any:
    return load_definitions(REPO)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_workflow_in_the_old_spelling_loads_to_the_same_spec(path: Path, shipped: Any, tmp_path: Path) -> None:
    data = plain(YAML(typ="rt", pure=True).load(path.read_text(encoding="utf-8")))
    changed = to_old(data)
    old_file = tmp_path / path.name
    YAML(typ="rt", pure=True).dump(data, old_file)  # keeps the order of states (edges come in file order)
    loader = Loader(Path("."), ACTIONS)
    name = f"workflows/{path.name}"
    old = loader.load_text((name, old_file.read_text(encoding="utf-8")), [], shipped)
    assert old == shipped.workflows[data["id"]]
    assert len(loader.warnings) == changed and all(w.file == name and w.warning for w in loader.warnings)


def test_the_shipped_workflows_use_every_new_spelling(shipped: Any) -> None:
    """So the test above checks every old spelling against a real workflow."""
    total: dict[str, int] = {}
    for path in SHIPPED:
        data = plain(YAML(typ="rt", pure=True).load(path.read_text(encoding="utf-8")))
        for state in data["states"].values():
            for key, present in (("timeout", "timeout" in state), ("public_record", "public_record" in state),
                                 ("deadline.after", "after" in state.get("deadline", {})),
                                 ("notice.after", "after" in state.get("notice", {})),
                                 ("collect.then", "then" in state.get("collect", {})),
                                 ("when", any("when" in t for t in state.get("transitions", [])))):
                total[key] = total.get(key, 0) + present
    assert all(total.values()), total


def test_lint_on_the_shipped_definitions_gives_no_warning() -> None:
    assert lint(REPO, warnings=True) == []
    result = civicflow("lint")
    # (the working-day calendar may warn about next year: org/holidays.yaml, not the DSL)
    said = [line for line in result.stdout.splitlines() if ": warning: " in line and "/org/holidays.yaml:" not in line]
    assert result.returncode == 0 and said == [], result.stdout


def test_civicflow_lint_prints_old_spellings_as_warnings_and_passes(tmp_path: Path) -> None:
    root = governance_dir(tmp_path)
    shutil.copy(DATA / "old_spelling" / "service_order.yaml", root / "workflows" / "service_order.yaml")
    result = civicflow("lint", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert (f"{root}/workflows/service_order.yaml:{expected_warnings(DATA / 'old_spelling' / 'service_order.yaml')[-1].split(':')[0]}:5: "
            "warning: states.to_rate.after: a state's 'after: <duration> -> <transition>' is the old spelling of "
            "'timeout' (write timeout: {after: 7d, then: auto_rate})") in lines
    assert lines[-1].endswith(": ok")
    broken = (root / "workflows" / "service_order.yaml")
    broken.write_text(broken.read_text(encoding="utf-8").replace("to: in_progress", "to: in_progres"), encoding="utf-8")
    result = civicflow("lint", str(root))
    assert result.returncode == 1  # a problem fails lint; the warnings are printed beside it
    assert "unknown state 'in_progres'" in result.stdout and ": warning: states.to_rate.after:" in result.stdout


# ------------------------------------------------------------------ public and public_record

def test_public_fields_neither_public_nor_recorded_nor_beside_a_notice_are_warned(tmp_path: Path) -> None:
    root = governance_dir(tmp_path)
    wf = root / "workflows" / "appraisal.yaml"
    text = wf.read_text(encoding="utf-8")
    text = text.replace("    public_record: true\n    public: true\n", "")
    text = text.replace("      public_fields: [person, unit, score]\n    transitions:",
                        "    public_fields: [person, unit, score]\n    transitions:")
    text = text.replace("      objection: {roles: [resident], to: objection_review}\n",
                        "      objection: {roles: [resident], to: objection_review}\n      public_fields: [person]\n")
    wf.write_text(text, encoding="utf-8")
    definitions = load_definitions(root)
    found = [shown(w) for w in definitions.warnings]
    assert len(found) == 2, found
    assert re.fullmatch(r"\d+:5: states\.notice\.public_fields: 'public_fields' of a notice state has no effect: "
                        r"the notice shows its own \(move them into notice: \{public_fields: \[\.\.\.\]\}\)", found[0])
    assert re.fullmatch(r"\d+:5: states\.published\.public_fields: 'public_fields' has no effect: the state is "
                        r"neither public nor recorded \(add public: true .*public_record: true .*\)", found[1])


# ------------------------------------------------------------------ versions kept in the store (engine.versions)

OLD_PERMIT = WORKFLOW_V1.replace(
    "    title: {zh: 已提交, en: Submitted}\n",
    "    title: {zh: 已提交, en: Submitted}\n    after: 30d -> expire\n").replace(
    "roles: [community_staff]}\n",
    "roles: [community_staff]}\n      - {id: expire, to: done, label: {zh: 逾期办结, en: Expired}, roles: [system]}\n").replace(
    "roles: [community_secretary]}", "roles: [community_secretary], guard: \"subject != ''\"}")
NEW_PERMIT = OLD_PERMIT.replace("after: 30d -> expire", "timeout: {after: 30d, then: expire}").replace("guard:", "when:")


def test_a_version_kept_in_the_old_spelling_keeps_loading_and_respelling_needs_no_new_version(tmp_path: Path, store: Any):
    assert OLD_PERMIT != WORKFLOW_V1 and "guard" not in NEW_PERMIT and "->" not in NEW_PERMIT
    root = write(tmp_path / "defs", OLD_PERMIT, FORM_V1)
    v1 = engine_on(root, store)
    assert len(v1.definitions.warnings) == 2
    case = v1.start("permit", user(v1, "resident"), {"subject": "s"})
    assert [t["kind"] for t in store.get(CASES, case.id)["timers"]] == ["after"]
    assert store.search(DEFINITIONS)[0]["files"][0]["text"] == OLD_PERMIT  # kept as written
    # the files respelt, the same version: the same workflow, so nothing to bump and nothing broken
    write(root, NEW_PERMIT, FORM_V1)
    respelt = Engine(load_definitions(root, fresh=True), store)
    assert respelt.definitions.warnings == () and migration.lint(respelt) == []
    # bumped: a case of version 1 runs on the kept old text, which still loads, to the same states
    write(root, NEW_PERMIT.replace("version: 1", "version: 2"), FORM_V1)
    v2 = Engine(load_definitions(root, fresh=True), store)
    kept = v2.kept.spec("permit", 1)
    assert kept is not None and not v2.kept.broken
    assert kept.states == v2.definitions.workflows["permit"].states
    assert migration.lint(v2) == []


def test_the_app_starts_on_old_spellings_and_logs_them_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from engine.web import create_app

    root = governance_dir(tmp_path)
    shutil.copy(DATA / "old_spelling" / "service_order.yaml", root / "workflows" / "service_order.yaml")
    with caplog.at_level("WARNING"):
        app = create_app({"TESTING": True, "SECRET_KEY": "t", "DEFINITIONS": str(root),
                          "STORE": str(tmp_path / "store.json"), "UPLOADS": str(tmp_path / "up")}, start_timers=False)
    said = [r.getMessage() for r in caplog.records if "old spelling" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("definitions: 2 old spelling(s), still read")
    assert "workflows/service_order.yaml:24:16: warning: states.dispatched.deadline.within" in said[0]
    assert "service_order" in app.extensions["civicflow"].definitions.workflows
    app.extensions["civicflow"].store.close()
