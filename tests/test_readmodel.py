"""The read model answers exactly what a scan of every case would, from indexes, and pages it.

The demo data (every shipped process, cases in many states, played through real transitions) is the
fixture: for every demo user the indexed inbox, lists, counts, public page and figures are compared with
the rule applied to every case one by one.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from engine.cases import CASES, Case
from engine.demo import load_demo
from engine.loader import load_definitions
from engine.runtime import Engine
from engine.store import MemoryStore, TinyDBStore
from engine.users import USERS, User, find_user, hash_password

ROOT = Path(__file__).resolve().parents[1]


def demo_engine(store) -> Engine:
    engine = Engine(load_definitions(ROOT), store)
    doc = YAML(typ="safe").load((ROOT / "demo" / "users.yaml").read_text(encoding="utf-8"))
    hashed = hash_password(doc["password"])
    with store.transaction() as tx:
        for item in doc["users"]:
            tx.insert(USERS, User(item["username"], item["name"], tuple(item["roles"]), item["unit"], hashed).to_doc())
    load_demo(engine, ROOT / "demo" / "cases")
    return engine


@pytest.fixture(scope="module")
def demo() -> Engine:
    return demo_engine(MemoryStore())


def everyone(engine: Engine) -> list[User]:
    return [User.from_doc(d) for d in engine.store.search(USERS)]


def all_cases(engine: Engine) -> list[Case]:
    return [Case.from_doc(d) for d in engine.store.search(CASES)]


def newest(cases: list[Case]) -> list[int]:
    return [c.id for c in sorted(cases, key=lambda c: (c.updated_at, c.id), reverse=True)]


def test_the_inbox_of_every_demo_user_is_what_a_scan_finds(demo: Engine):
    cases = all_cases(demo)
    busy = 0
    for user in everyone(demo):
        expected = newest([c for c in cases if demo.waits_for(c, user)])
        assert [c.id for c in demo.inbox(user)] == expected, user.username
        busy += bool(expected)
    assert busy >= 10  # the comparison is not between empty lists


def test_every_list_and_its_state_counts_are_what_a_scan_finds(demo: Engine):
    cases = all_cases(demo)
    for user in everyone(demo):
        for wf in demo.definitions.workflows.values():
            visible = [c for c in cases if c.workflow == wf.id and demo.can_see(c, user)]
            assert [c.id for c in demo.cases(user, wf.id)] == newest(visible), (user.username, wf.id)
            counts = demo.read.state_counts(user, wf)
            assert counts == {s: sum(1 for c in visible if c.state == s) for s in wf.states}, (user.username, wf.id)



def test_a_list_filtered_by_an_indexed_field_is_what_the_filter_finds_case_by_case(demo: Engine):
    """Select, multiselect, tick box and org unit filters are answered from index terms: for every user,
    workflow, filter field and value seen in the data, the lookup finds exactly what ``matches`` keeps."""
    from engine.readmodel import filter_fields

    org, cases, tried, kinds = demo.definitions.org, all_cases(demo), 0, set()
    for user in everyone(demo):
        for wf in demo.definitions.workflows.values():
            visible = [c for c in cases if c.workflow == wf.id and demo.can_see(c, user)]
            for f in filter_fields(demo.definitions, wf):
                if not f.kind.indexed:
                    continue
                wanted_values = {t for c in visible for t in f.kind.terms(f, c.data.get(f.id), org)}
                if f.kind.name == "checkbox":
                    wanted_values = {"1", "0"}
                for wanted in sorted(wanted_values):
                    expected = newest([c for c in visible if f.kind.matches(f, c.data.get(f.id), wanted, org)])
                    found = demo.read.listing(user, wf, size=None, term=(f.id, f.kind.wanted_terms(f, wanted)))
                    assert [c.id for c in found.items] == expected, (user.username, wf.id, f.id, wanted)
                    assert found.total == len(expected)
                    tried += bool(expected)
                    kinds.add(f.kind.name)
    assert tried >= 50 and {"select", "orgunit"} <= kinds, (tried, kinds)

def test_pages_split_the_list_without_losing_or_repeating_a_case(demo: Engine):
    staff = find_user(demo.store, "staff")
    wf = max(demo.definitions.workflows.values(), key=lambda w: len(demo.cases(staff, w.id)))
    whole = [c.id for c in demo.cases(staff, wf.id)]
    assert len(whole) >= 5
    pages = [demo.read.listing(staff, wf, page=n, size=2) for n in range(1, len(whole) // 2 + 2)]
    assert [c.id for p in pages for c in p.items] == whole
    assert {p.total for p in pages} == {len(whole)} and pages[0].pages == -(-len(whole) // 2)


def test_the_public_page_lists_exactly_the_cases_on_notice_or_public(demo: Engine):
    expected = []
    for case in all_cases(demo):
        state = demo.definitions.workflows[case.workflow].states[case.state]
        if state.notice or state.public:
            expected.append(case)
    assert expected and [c.id for c, _ in demo.public_cases()] == newest(expected)


def test_figures_add_up_to_the_metrics_counted_case_by_case(demo: Engine):
    secretary = find_user(demo.store, "secretary")
    expected: dict[tuple, float] = {}
    for case in all_cases(demo):
        wf = demo.definitions.workflows[case.workflow]
        if not demo.can_see(case, secretary) or not (set(secretary.roles) & demo.acting_roles(wf)):
            continue
        ctx = demo.guard_context(case, secretary)
        for metric in wf.metrics:
            if metric.where is None or metric.where.test(ctx):
                value = 1 if metric.sum is None else case.data.get(metric.sum)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    key = (wf.id, metric.id, case.created_at[:7], case.org_unit)
                    expected[key] = expected.get(key, 0) + value
    got = {(r["workflow"], r["metric"], r["month"], r["unit"]): r["value"] for r in demo.figures(secretary)}
    assert expected and got == {k: v for k, v in expected.items() if v}


def test_a_transition_moves_the_case_between_inboxes_in_the_same_transaction(demo: Engine):
    staff = find_user(demo.store, "staff")
    case = next(c for c in demo.inbox(staff) if any(t.form is None and t.comment != "required" and not t.assign
                                                    for t in demo.available_transitions(c, staff)))
    t = next(t for t in demo.available_transitions(case, staff) if t.form is None and t.comment != "required" and not t.assign)
    before = {c.id for c in demo.inbox(staff)}
    moved = demo.fire(case.id, t.id, staff)
    after = {c.id for c in demo.inbox(staff)}
    assert (case.id in after) == demo.waits_for(moved, staff)
    assert after - {case.id} == before - {case.id}


def test_a_reopened_file_store_answers_the_same(tmp_path: Path, demo: Engine):
    path = tmp_path / "civicflow.json"
    store = TinyDBStore(path)
    engine = demo_engine(store)
    expected = {u.username: [c.id for c in engine.inbox(u)] for u in everyone(engine)}
    store.close()
    again = TinyDBStore(path)
    try:
        engine = Engine(load_definitions(ROOT), again)
        assert {u.username: [c.id for c in engine.inbox(u)] for u in everyone(engine)} == expected
    finally:
        again.close()


def test_the_index_version_follows_the_definitions(tmp_path: Path):
    """A file store reuses saved index entries only under the same version: editing a workflow changes it."""
    import shutil

    from engine.readmodel import fingerprint

    for part in ("org", "forms", "workflows"):
        shutil.copytree(ROOT / part, tmp_path / part)
    assert fingerprint(load_definitions(tmp_path)) == fingerprint(load_definitions(ROOT))
    wf = tmp_path / "workflows" / "service_order.yaml"
    wf.write_text(wf.read_text(encoding="utf-8").replace("title: {zh: 待派单", "title: {zh: 等待派单", 1), encoding="utf-8")
    assert fingerprint(load_definitions(tmp_path)) != fingerprint(load_definitions(ROOT))


@pytest.fixture(scope="module", params=["memory", "tinydb", "postgres"])
def demo_on(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The demo on each store (PostgreSQL answers list filters in SQL, the others with the condition's test)."""
    from engine.store import open_store

    if request.param == "memory":
        yield demo_engine(MemoryStore())
        return
    if request.param == "postgres":
        server = request.getfixturevalue("pg_server")
        location = server.lease()
    else:
        location = str(tmp_path_factory.mktemp("demo") / "db.json")
    store = open_store(location)
    yield demo_engine(store)
    store.close()
    if request.param == "postgres":
        server.give_back(location)


def _search_values(f, values: list) -> list:
    """What to search a non-indexed filter for: pieces of the values seen (in upper case too), and ranges."""
    if f.kind.search == "text":
        texts = sorted({v for v in values if isinstance(v, str) and v})
        return sorted({t[:2] for t in texts[:3]} | {t[-3:].upper() for t in texts[:2]} | {"zz-none"})
    if f.kind.search == "range":
        seen = sorted({v for v in values if v is not None and not isinstance(v, (bool, list, dict))}, key=str)
        if not seen:
            return [("1", "")]
        mid = str(seen[len(seen) // 2])
        return [(mid, ""), ("", mid), (str(seen[0]), mid[:7]), ("not a number", "")]
    return []


def test_a_list_filtered_by_text_and_ranges_is_what_the_filter_finds_case_by_case(demo_on: Engine):
    """Text contains and number / date ranges are store conditions (PostgreSQL: SQL over the JSONB cases): for
    every user, workflow, filter field and a few values, on every store, the list (its rows, order, total and
    a page of it) is exactly what the field type's ``matches`` keeps of the visible cases, alone and combined."""
    from engine.readmodel import filter_fields
    from engine.web import filters

    demo = demo_on
    org, cases, tried, kinds = demo.definitions.org, all_cases(demo), 0, set()
    for user in everyone(demo):
        for wf in demo.definitions.workflows.values():
            visible = [c for c in cases if c.workflow == wf.id and demo.can_see(c, user)]
            fields = [f for f in filter_fields(demo.definitions, wf) if not f.kind.indexed]
            chosen_all: dict = {}
            for f in fields:
                for wanted in _search_values(f, [c.data.get(f.id) for c in visible]):
                    expected = newest([c for c in visible if f.kind.matches(f, c.data.get(f.id), wanted, org)])
                    where = filters.condition(fields, {f.id: wanted}, org)
                    found = demo.read.listing(user, wf, where=where, size=None)
                    assert [c.id for c in found.items] == expected, (user.username, wf.id, f.id, wanted)
                    assert found.total == len(expected)
                    page = demo.read.listing(user, wf, where=where, page=2, size=2)
                    assert [c.id for c in page.items] == expected[2:4] and page.total == len(expected)
                    tried += bool(expected)
                    kinds.add(f.kind.name)
                    if expected:
                        chosen_all.setdefault(f.id, wanted)
            if len(chosen_all) > 1:
                both = filters.condition(fields, chosen_all, org)
                by_id = {f.id: f for f in fields}
                expected = newest([c for c in visible if all(by_id[k].kind.matches(by_id[k], c.data.get(k), v, org)
                                                             for k, v in chosen_all.items())])
                assert [c.id for c in demo.read.listing(user, wf, where=both, size=None).items] == expected
    assert tried >= 50 and {"text", "date"} <= kinds, (tried, kinds)
