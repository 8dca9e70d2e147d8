"""The loader: every broken definition under tests/data/invalid/ is reported where it is, with a message to act on.

Each invalid file starts with header comments::

    # place: workflows                 (a folder: the file keeps its name; or a path: it replaces that file)
    # expect: 16:13: states.review.transitions[0].to: unknown state 'aprove' (did you mean 'approve'?)

The file is dropped into a copy of tests/data/valid/base, and the loader must report
exactly the expected problems, all in that file (no cascades into other files). A
trailing ``(...)`` on an expect line must be a substring of the problem's hint.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.actions import ActionRegistry
from engine.errors import DefinitionError, Problem
from engine.loader import lint, load_definitions

DATA = Path(__file__).parent / "data"
BASE = DATA / "valid" / "base"
INVALID = sorted((DATA / "invalid").glob("*.yaml"))
REPO = Path(__file__).parent.parent


@dataclass(frozen=True)
class Case:
    file: Path
    place: str
    expects: tuple[str, ...]

    @property
    def target(self) -> str:
        """Where the file goes, relative to the definitions root (also the name problems report)."""
        return self.place if self.place.endswith(".yaml") else f"{self.place}/{self.file.name}"


def read_case(path: Path) -> Case:
    place, expects = None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if m := re.fullmatch(r"# place: (\S+)", line):
            place = m.group(1)
        elif m := re.fullmatch(r"# expect: (.+)", line):
            expects.append(m.group(1))
    assert place in ("forms", "workflows") or re.fullmatch(r"(org|forms)/\w+\.yaml", place or ""), \
        f"{path.name}: needs '# place: forms|workflows|org/roles.yaml|org/units.yaml|forms/choices.yaml'"
    assert expects, f"{path.name}: needs at least one '# expect: line:col: path: message' line"
    return Case(path, place, tuple(expects))


def short(p: Problem) -> str:
    """A problem as an expect line writes it: ``line:col: path: message`` (no file, no hint)."""
    return f"{p.line}:{p.col}: {p.path or '<document>'}: {p.message}"


def matches(expect: str, p: Problem) -> bool:
    base = short(p)
    if expect == base:
        return True
    return expect.startswith(base + " (") and expect.endswith(")") and expect[len(base) + 2:-1] in p.hint


def base_copy(tmp_path: Path) -> Path:
    root = tmp_path / "defs"
    shutil.copytree(BASE, root)
    return root


def problems_of(root: Path) -> list[Problem]:
    with pytest.raises(DefinitionError) as info:
        load_definitions(root)
    return info.value.problems


# --------------------------------------------------------------------------- the invalid files

def test_there_are_enough_invalid_cases() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_definition(path: Path, tmp_path: Path) -> None:
    case = read_case(path)
    root = base_copy(tmp_path)
    (root / case.target).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")

    with pytest.raises(DefinitionError) as info:
        load_definitions(root)

    problems = info.value.problems
    report = "\n".join(str(p) for p in problems)
    assert [p.file for p in problems] == [case.target] * len(problems), f"problems outside the file:\n{report}"
    for expect in case.expects:
        assert any(matches(expect, p) for p in problems), f"expected {expect!r} in:\n{report}"
    unexpected = [str(p) for p in problems if not any(matches(e, p) for e in case.expects)]
    assert not unexpected, "not declared with '# expect:' in the file:\n" + "\n".join(unexpected)
    assert str(info.value).splitlines() == [str(p) for p in problems]


def test_matching_is_strict() -> None:
    """The matcher the parametrized test relies on must reject near misses, or the test could not fail."""
    p = Problem("workflows/x.yaml", 16, 13, "states.a.to", "unknown state 'b'", "did you mean 'c'?")
    assert matches("16:13: states.a.to: unknown state 'b'", p)
    assert matches("16:13: states.a.to: unknown state 'b' (did you mean 'c'?)", p)
    assert not matches("16:13: states.a.to: unknown state 'b' (did you mean 'd'?)", p)
    assert not matches("16:12: states.a.to: unknown state 'b'", p)
    assert not matches("16:13: states.a: unknown state 'b'", p)
    assert not matches("16:13: states.a.to: unknown state", p)


# --------------------------------------------------------------------------- valid definitions

def test_shipped_definitions_load_without_problems() -> None:
    assert lint(REPO, warnings=True) == []  # no old spellings either (tests/test_spelling.py)
    defs = load_definitions(REPO)
    wf = defs.workflow("volunteer_registration")
    assert wf.start_form == "volunteer_application" and wf.org_unit_field == "grid"
    assert set(wf.states) == {"submitted", "returned", "active", "rejected", "withdrawn"}
    assert {s for s, st in wf.states.items() if st.final} == {"active", "rejected", "withdrawn"}
    form = defs.form("volunteer_application")
    assert form.field("skills").choices[0].value == "medical"  # resolved from forms/choices.yaml
    assert form.sensitive_paths() == {"phone", "id_number", "address"}


def test_base_definitions_load_into_specs() -> None:
    defs = load_definitions(BASE)
    assert set(defs.forms) == {"help_request", "review_note"}
    assert defs.roles["admin"].scope == "all" and defs.roles["resident"].scope == "unit"
    assert defs.roles["admin"].title == {"zh": "管理员", "en": "管理员"}
    assert defs.org.ancestors("river-g1") == ["river-g1", "river", "east-street", "east"]
    accept = defs.workflow("help").state("submitted").transition("accept")
    assert accept is not None and accept.form == "review_note" and accept.target == "done"
    assert [a.name for a in accept.actions] == ["notify_creator"]
    assert accept.guard is not None and accept.guard.names == {"topic", "user"}
    assert defs.choice_lists["yes_no"][0].value == "yes_value"


def test_field_defaults_from_the_type(tmp_path: Path) -> None:
    root = base_copy(tmp_path)
    (root / "forms" / "kinds.yaml").write_text(
        "id: kinds\nversion: 1\ntitle: t\nfields:\n"
        "  - {id: stars, type: rating, label: s}\n"
        "  - {id: picture, type: photo, label: p}\n"
        "  - {id: scan, type: file, label: f, max_size: 1.5MB, accept: [application/pdf]}\n"
        "  - {id: visit_day, type: date, label: d, default: 2026-11-27}\n"
        "  - {id: people, type: repeat, label: r, required: true, fields: [{id: who, type: text, label: w}]}\n",
        encoding="utf-8")
    form = load_definitions(root).form("kinds")
    stars, picture, scan, day, people = form.fields
    assert (stars.min, stars.max) == (1, 5)
    assert picture.accept == ("image/jpeg", "image/png", "image/webp") and picture.max_size == 5 * 1024 * 1024
    assert scan.accept == ("application/pdf",) and scan.max_size == int(1.5 * 1024 * 1024)
    assert day.default == "2026-11-27"  # an unquoted YAML date is kept as ISO text, like form input
    assert people.min_rows == 1 and [f.id for f in people.fields] == ["who"]


# --------------------------------------------------------------------------- collecting and ordering

def test_every_mistake_in_a_file_is_reported(tmp_path: Path) -> None:
    root = base_copy(tmp_path)
    shutil.copy(DATA / "invalid" / "three_mistakes.yaml", root / "forms")

    problems = problems_of(root)

    assert [(p.line, p.path) for p in problems] == [
        (13, "fields[0].min_length"), (18, "fields[1].max"), (22, "fields[2].show_if")]


def test_schema_mistakes_are_all_reported_too(tmp_path: Path) -> None:
    root = base_copy(tmp_path)
    shutil.copy(DATA / "invalid" / "three_schema_mistakes.yaml", root / "forms")

    problems = problems_of(root)

    assert [p.path for p in problems] == ["fields[0].max_length", "fields[1].type", "fields[2].requried"]


def test_problems_from_many_files_are_sorted_by_file_then_line(tmp_path: Path) -> None:
    root = base_copy(tmp_path)
    for name in ("unknown_action.yaml", "unreachable_state.yaml", "compute_cycle.yaml", "duplicate_field_id.yaml"):
        case = read_case(DATA / "invalid" / name)
        shutil.copy(case.file, root / case.target)

    problems = problems_of(root)

    keys = [(p.file, p.line, p.col) for p in problems]
    assert keys == sorted(keys)
    assert [p.file for p in problems] == [
        "forms/compute_cycle.yaml", "forms/compute_cycle.yaml", "forms/duplicate_field_id.yaml",
        "workflows/unknown_action.yaml", "workflows/unknown_action.yaml", "workflows/unreachable_state.yaml"]
    assert [p.line for p in problems[:2]] == [11, 15]


def test_duplicate_form_ids_across_two_files(tmp_path: Path) -> None:
    root = base_copy(tmp_path)
    (root / "forms" / "a_feedback.yaml").write_text(
        "id: feedback\nversion: 1\ntitle: 意见\nfields:\n  - {id: text, type: text, label: 意见}\n", encoding="utf-8")
    (root / "forms" / "b_feedback.yaml").write_text(
        "# a copy someone forgot to rename\nid: feedback\nversion: 2\ntitle: 意见\nfields:\n"
        "  - {id: text, type: textarea, label: 意见}\n", encoding="utf-8")

    problems = problems_of(root)

    assert [str(p) for p in problems] == [
        "forms/b_feedback.yaml:2:5: id: duplicate form id 'feedback' (already defined in forms/a_feedback.yaml)"]


def test_duplicate_workflow_id_is_reported_even_when_the_first_is_broken(tmp_path: Path) -> None:
    root = base_copy(tmp_path)
    help_yaml = (root / "workflows" / "help.yaml").read_text(encoding="utf-8")
    (root / "workflows" / "help.yaml").write_text(help_yaml.replace("to: done", "to: dnoe"), encoding="utf-8")
    (root / "workflows" / "help_copy.yaml").write_text(help_yaml, encoding="utf-8")

    problems = problems_of(root)

    assert [(p.file, p.message) for p in problems] == [
        ("workflows/help.yaml", "unknown state 'dnoe'"),
        ("workflows/help_copy.yaml", "duplicate workflow id 'help'")]


# --------------------------------------------------------------------------- no cascades

def test_a_form_that_is_not_yaml_is_not_also_an_unknown_form(tmp_path: Path) -> None:
    root = base_copy(tmp_path)
    path = root / "forms" / "help_request.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("  - id: phone", "  - id: phone\n   oops: [", 1),
                    encoding="utf-8")

    problems = problems_of(root)

    assert [p.file for p in problems] == ["forms/help_request.yaml"]
    assert problems[0].message.startswith("YAML error:")


def test_a_broken_choices_file_does_not_blame_the_forms_using_it(tmp_path: Path) -> None:
    root = base_copy(tmp_path)
    (root / "forms" / "choices.yaml").write_text("choice_lists:\n  topics: [repair, noise\n", encoding="utf-8")

    problems = problems_of(root)

    assert [p.file for p in problems] == ["forms/choices.yaml"]


def test_missing_roles_file_is_one_problem(tmp_path: Path) -> None:
    root = base_copy(tmp_path)
    (root / "org" / "roles.yaml").unlink()

    problems = problems_of(root)

    assert [str(p) for p in problems] == ["org/roles.yaml:1:1: <document>: file is missing (declare every role here)"]


# --------------------------------------------------------------------------- actions

def test_action_names_are_checked_against_the_registry_in_use(tmp_path: Path) -> None:
    registry = ActionRegistry()

    @registry.action("notify_creatr")
    def _notify(ctx: object) -> None:  # pragma: no cover - never run, only registered
        pass

    with pytest.raises(DefinitionError) as info:
        load_definitions(BASE, actions=registry)

    assert [str(p) for p in info.value.problems] == [
        "workflows/help.yaml:23:19: states.submitted.transitions[0].actions[0]: unknown action 'notify_creator' "
        "(did you mean 'notify_creatr'?)"]


def test_editor_schema_comments_point_at_shipped_schemas():
    """Every shipped definition starts with a yaml-language-server line naming a schema file that exists."""
    import re

    root = Path(__file__).resolve().parents[1]
    files = [*root.glob("forms/*.yaml"), *root.glob("workflows/*.yaml"), *root.glob("org/*.yaml")]
    assert files
    for path in files:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
        assert match, f"{path} has no schema line"
        target = (path.parent / match.group(1)).resolve()
        assert target.is_file(), f"{path}: {target} missing"
        assert "$id" not in json.loads(target.read_text())  # relative $refs must resolve next to the file


def test_the_fast_parser_reads_every_shipped_definition_as_the_round_trip_parser_does():
    """Definitions are read with libyaml and parsed for positions only when a problem is reported: both must
    give the same values, for every shipped file and for the scalars YAML 1.1 and 1.2 read differently."""
    from ruamel.yaml import YAML

    from engine.yamlsource import _fast_parser, plain, read_yaml

    fast = _fast_parser()
    assert fast is not None, "ruamel.yaml.clib is a dependency: without it every start parses in pure Python"
    root = Path(__file__).resolve().parents[1]
    files = sorted(p for d in ("workflows", "forms", "org") for p in (root / d).rglob("*.yaml")) + sorted(root.glob("*.yaml"))
    assert len(files) > 50
    tricky = "a: yes\nb: 010\nc: 1:20\nd: 2024-01-01\ne: on\nf: 0o10\ng: 1e3\nh: .5\ni: ~\nj: 0x1F\nk: +12\nl: NO\n"
    for text in [p.read_text(encoding="utf-8") for p in files] + [tricky]:
        assert plain(fast.load(text)) == plain(YAML(typ="rt", pure=True).load(text))
    source, problems = read_yaml(files[0], "x.yaml")
    assert not problems and source is not None and source._tree is None  # no round-trip parse on the happy path
    assert source.position([next(iter(source.data))]) == (source.tree.lc.value(next(iter(source.data)))[0] + 1,
                                                           source.tree.lc.value(next(iter(source.data)))[1] + 1)
