"""Build a Civicflow instance directory with N cases of real engine output, for the benchmarks.

    python bench/instance.py 1000 10000 100000      # prints the directory of each (built or reused)

An instance is what ``CIVICFLOW_INSTANCE=<dir>`` points the app at: a TinyDB store file
``civicflow.json`` and a ``secret_key``. It holds the demo users (demo/users.yaml, password
demo1234) and N cases spread over every shipped workflow and as many of its states as the engine
reaches.

How: first a *pool* of cases is made by the engine itself, on a MemoryStore with a FrozenClock: the
demo scenarios (demo/cases/*.yaml), then random walks — start a case as a user who may start it, with
generated valid values, then day by day take a random available transition as a user who may take it,
contribute where a state collects, object during notices, and let timers fire. The pool is then
replicated to N: copies with new ids (links between cases kept inside a copy), created/updated dates
shifted back over the last 24 months, and the org unit moved to another unit of the same level (orgunit
fields move with it). Notifications, ledger and publications are the pool's own (not replicated).

Built instances are cached under ``bench/results/instances/<N>-<hash>/`` where the hash covers the
engine core, the store, the definitions, the demo and this file, so a rerun reuses them.

Only public engine entry points are used (load_definitions, Engine, the stores, the demo loader), so
the bench keeps working while the engine's insides change.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where bench/http.py would hide the standard
# library's ``http`` package (werkzeug imports it): take the folder off.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import collections
import datetime as dt
import hashlib
import json
import os
import random
import secrets
import shutil
import time
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ruamel.yaml import YAML  # noqa: E402

from engine.clock import SHANGHAI, FrozenClock  # noqa: E402
from engine.demo import load_demo  # noqa: E402
from engine.errors import EngineError  # noqa: E402
from engine.loader import load_definitions  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from engine.store import MemoryStore, TinyDBStore  # noqa: E402
from engine.users import User, hash_password  # noqa: E402

RESULTS = ROOT / "bench" / "results"
INSTANCES = RESULTS / "instances"
PASSWORD = "demo1234"
CASES = "cases"
USERS = "users"
#: Tables copied from the pool as they are (the points ledger and publication chain must stay intact).
POOL_TABLES = ("notifications", "ledger", "points_accounts", "chain_heads", "publications", "rounds", "uploads")
BATCH = 2000
DAYS_SPREAD = 730

TEXT = "居民反映情况，社区已登记并按流程跟进办理。Residents raised it; the community logged it and follows up. "


def log(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- cache key

def source_hash() -> str:
    """What the built data depends on: the engine outside engine/web, definitions, demo, and this builder.

    ``CIVICFLOW_BENCH_INSTANCE_KEY`` names the key instead: comparing a store change before and after on the
    same data (the store's own files are in the hash, though they do not shape the data) without a rebuild."""
    if os.environ.get("CIVICFLOW_BENCH_INSTANCE_KEY"):
        return os.environ["CIVICFLOW_BENCH_INSTANCE_KEY"]
    digest = hashlib.sha256()
    patterns = ["engine/**/*.py", "engine/schema/*", "workflows/*.yaml", "forms/*.yaml",
                "org/*.yaml", "demo/*.yaml", "demo/cases/*.yaml", "bench/instance.py"]
    for pattern in patterns:
        # the web layer does not shape the data; any other engine package (new ones too) may
        for path in sorted(p for p in ROOT.glob(pattern) if "web" not in p.relative_to(ROOT).parts):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# ----------------------------------------------------------------------------- values for forms

def _id_number(rng: random.Random) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    body = f"341004{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randrange(1000):03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights)) % 11]


class Values:
    """Generated values for a form's fields; the engine validates them, and a refusal means: try again."""

    def __init__(self, engine: Engine, rng: random.Random):
        self.engine = engine
        self.rng = rng
        self.org = engine.definitions.org
        #: form id -> values seen in the demo data (valid by construction: the engine accepted them)
        self.seen: dict[str, list[dict[str, Any]]] = {}

    def harvest(self, source: Engine) -> None:
        forms = source.definitions.forms
        for doc in source.store.search(CASES):
            wf = source.definitions.workflows.get(doc["workflow"])
            if wf is None:
                continue
            form_ids = {wf.start_form} | {t.form for t in wf.transitions() if t.form}
            for form_id in form_ids:
                form = forms[form_id]
                values = {f.id: doc["data"][f.id] for f in form.fields if f.id in doc["data"] and not f.compute}
                if values:
                    self.seen.setdefault(form_id, []).append(values)
            for state_id, bucket in doc.get("contributions", {}).items():
                state = wf.states.get(state_id)
                if state is not None and state.collect:
                    for item in bucket.values():
                        self.seen.setdefault(state.collect.form, []).append(dict(item["data"]))

    def for_form(self, form_id: str, user: User, attempt: int) -> dict[str, Any]:
        seen = self.seen.get(form_id)
        if seen and attempt % 2 == 1:
            return dict(self.rng.choice(seen))
        form = self.engine.definitions.forms[form_id]
        return {f.id: v for f in form.fields if (v := self.value(f, user)) is not None}

    def _units(self, f: Any, user: User) -> list[str]:
        units = [u.id for u in (self.org.at_level(f.level) if f.level else self.org.units.values())]
        near = [u for u in units if self.org.contains(user.org_unit, u) or self.org.contains(u, user.org_unit)]
        return near or units

    def value(self, f: Any, user: User) -> Any:
        rng, t = self.rng, f.type
        if f.compute is not None:
            return None
        if not f.required and rng.random() < 0.25:
            return None
        if t in ("text", "textarea"):
            low = f.min_length or 2
            high = f.max_length or (200 if t == "textarea" else 30)
            length = rng.randint(low, max(low, min(high, low + (60 if t == "textarea" else 12))))
            start = rng.randrange(len(TEXT))
            return ((TEXT[start:] + TEXT) * (length // len(TEXT) + 2))[:length].strip() or "好"
        if t in ("integer", "number", "score"):
            low = int(f.min) if f.min is not None else 0
            high = int(f.max) if f.max is not None else low + 100
            return rng.randint(low, max(low, min(high, low + 100)))
        if t == "rating":
            return rng.choice([3, 4, 5, 5, 5, 2, 1])
        if t == "date":
            day = self.engine.clock().date() + dt.timedelta(days=rng.randint(-20, 40))
            return day.isoformat()
        if t == "datetime":
            moment = self.engine.clock() + dt.timedelta(days=rng.randint(0, 20), hours=rng.randint(0, 10))
            return moment.strftime("%Y-%m-%dT%H:%M")
        if t == "phone":
            return f"13{rng.randrange(10**9):09d}"
        if t == "id_number":
            return _id_number(rng)
        if t == "email":
            return f"user{rng.randrange(1000)}@example.org"
        if t == "select":
            return rng.choice(f.choices).value if f.choices else None
        if t == "multiselect":
            return [c.value for c in rng.sample(f.choices, rng.randint(1, min(3, len(f.choices))))] if f.choices else None
        if t == "checkbox":
            return True if f.required else rng.random() < 0.5
        if t in ("file", "photo"):
            if not f.required:
                return None
            kind = "image/jpeg" if t == "photo" or "image/jpeg" in f.accept else (f.accept[0] if f.accept else "application/pdf")
            return {"name": "bench.jpg" if kind == "image/jpeg" else "bench.pdf", "key": secrets.token_hex(8),
                    "size": 2048, "content_type": kind}
        if t == "orgunit":
            return rng.choice(self._units(f, user))
        if t == "case":
            choices = self.engine.case_choices(f, user)
            return rng.choice(choices).id if choices else None
        if t == "repeat":
            rows = rng.randint(f.min_rows or 0, max(f.min_rows or 0, min(f.max_rows or 3, (f.min_rows or 0) + 2)))
            return [{g.id: v for g in f.fields if (v := self.value(g, user)) is not None} for _ in range(rows)]
        return None


# ----------------------------------------------------------------------------- the pool

def _demo_users() -> tuple[list[dict[str, Any]], str]:
    doc = YAML(typ="safe").load((ROOT / "demo" / "users.yaml").read_text(encoding="utf-8"))
    return doc["users"], doc["password"]


class Walker:
    """Random walks of cases through the engine, as the people allowed to act."""

    def __init__(self, engine: Engine, clock: FrozenClock, users: list[User], rng: random.Random):
        self.engine, self.clock, self.users, self.rng = engine, clock, users, rng
        self.values = Values(engine, rng)
        self.refused = 0
        self.reasons: collections.Counter[str] = collections.Counter()

    def start(self, wf: Any) -> int | None:
        starters = [u for u in self.users if self.engine.may_start(wf, u)]
        for attempt in range(12):
            user = self.rng.choice(starters)
            try:
                return self.engine.start(wf.id, user, self.values.for_form(wf.start_form, user, attempt)).id
            except EngineError as exc:
                self.refuse(f"{wf.id}: start", exc)
        return None

    def refuse(self, where: str, exc: Exception) -> None:
        self.refused += 1
        self.reasons[f"{where}: {type(exc).__name__}: {str(exc)[:120]}"] += 1

    def step(self, case_id: int) -> bool:
        """One random move of the case; False when nobody can move it (a final state, or waiting on a timer)."""
        engine, rng = self.engine, self.rng
        case = engine.get(case_id)
        wf = engine.workflow_of(case)
        state = wf.states[case.state]
        if state.final:
            return False
        moves: list[tuple[str, User, Any]] = []
        for user in self.users:
            moves += [("fire", user, t) for t in engine.available_transitions(case, user)]
            if state.collect and engine.may_contribute(case, user)[0]:
                moves += [("contribute", user, None)] * 2  # contributions come before the step that closes them
            if state.notice and set(state.notice.objection_roles) & set(user.roles) and rng.random() < 0.02:
                moves.append(("object", user, None))
        rng.shuffle(moves)
        for kind, user, t in moves[:6]:
            for attempt in range(6):
                try:
                    if kind == "contribute":
                        engine.contribute(case_id, user, self.values.for_form(state.collect.form, user, attempt))
                    elif kind == "object":
                        engine.object(case_id, user, "公示内容与实际情况不符，请核实。")
                    else:
                        values = self.values.for_form(t.form, user, attempt) if t.form else {}
                        chosen: list[str] = []
                        if t.assign is not None and t.assign.mode == "choose":
                            eligible = [u.username for u in engine.eligible_assignees(case, t.assign, user)]
                            if not eligible:
                                break
                            chosen = rng.sample(eligible, rng.randint(1, min(2 if t.assign.multiple else 1, len(eligible))))
                        engine.fire(case_id, t.id, user, values, comment="已核实，同意。", assignees=chosen)
                    return True
                except EngineError as exc:
                    self.refuse(f"{wf.id}.{case.state}: {kind} {t.id if t else ''}", exc)
        return False


def build_pool(walks_per_workflow: int = 40, days: int = 40, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """Every table of a MemoryStore filled by the engine: demo scenarios, then random walks."""
    rng = random.Random(seed)
    definitions = load_definitions(ROOT)
    real_now = dt.datetime.now(SHANGHAI).replace(microsecond=0)
    clock = FrozenClock(real_now - dt.timedelta(days=days + 5))
    items, password = _demo_users()
    hashed = hash_password(password)  # one hash for all: hashing is slow on purpose
    started = time.perf_counter()

    def fresh() -> Engine:
        store = MemoryStore()
        with store.transaction() as tx:
            for item in items:
                tx.insert(USERS, User(item["username"], item["name"], tuple(item["roles"]), item["unit"], hashed).to_doc())
        return Engine(definitions, store, clock=clock)

    # values the demo scenarios submit: valid examples for forms (e.g. votes whose counts must add up)
    sample = fresh()
    load_demo(sample, ROOT / "demo" / "cases")
    engine = fresh()
    store = engine.store
    users = [User.from_doc(d) for d in store.search(USERS)]
    walker = Walker(engine, clock, users, rng)
    walker.values.harvest(sample)
    workflows = [wf for wf in definitions.workflows.values() if any(engine.may_start(wf, u) for u in users)]
    active: list[int] = []
    per_day = max(1, round(walks_per_workflow / days))
    for day in range(days):
        for wf in workflows:  # new cases every day, so the last days leave cases in the early states too
            for _ in range(per_day):
                case_id = walker.start(wf)
                if case_id is not None:
                    active.append(case_id)
        still = []
        for case_id in active:
            if rng.random() < 0.08:  # the walk ends here: leaves cases spread over the states
                continue
            if rng.random() < 0.7:
                walker.step(case_id)
            still.append(case_id)
        active = still
        if day == days - 4:
            close_rounds(engine, users)
        clock.advance(days=1, hours=rng.uniform(-3, 3))
        engine.tick()
        if day % 5 == 0:
            log(f"pool: day {day + 1}/{days}: {store.count(CASES)} cases, {len(active)} walking, "
                f"{walker.refused} refused attempts, {time.perf_counter() - started:.0f}s")
    clock.current = max(clock.current, real_now)
    engine.tick()
    # the demo last, as `civicflow demo` plays it: its cases end about now, in the states it describes
    demo_count = load_demo(engine, ROOT / "demo" / "cases")
    log(f"pool: {demo_count} demo cases played after the walks")
    tables = {name: store.search(name) for name in (CASES, USERS, *POOL_TABLES)}
    log(f"pool: {len(tables[CASES])} cases in {time.perf_counter() - started:.1f}s; most frequent refusals:")
    for reason, count in walker.reasons.most_common(12):
        log(f"  {count:>5}  {reason}")
    report_states(definitions, tables[CASES])
    return tables


def close_rounds(engine: Engine, users: list[User]) -> None:
    """Close the open rounds of ranked workflows (but those the demo closes itself: it would find them closed)."""
    demo_closes = set()
    for path in (ROOT / "demo" / "cases").glob("*.yaml"):
        for item in YAML(typ="safe").load(path.read_text(encoding="utf-8")) or []:
            if isinstance(item, dict) and "close_round" in item:
                demo_closes.add(item["close_round"]["workflow"])
    for wf in engine.definitions.workflows.values():
        rankers = [u for u in users if engine.can_rank(wf, u)]
        if wf.id in demo_closes or not rankers:
            continue
        for round_id in engine.rounds(wf.id, rankers[0]):
            if engine.round_closed(wf.id, round_id) is None:
                try:
                    engine.close_round(wf.id, round_id, rankers[0])
                    log(f"pool: closed round {round_id} of {wf.id}")
                except EngineError as exc:
                    log(f"pool: round {round_id} of {wf.id} not closed: {exc}")


def report_states(definitions: Any, docs: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    reached: dict[str, set[str]] = {wf: set() for wf in definitions.workflows}
    for doc in docs:
        reached.setdefault(doc["workflow"], set()).add(doc["state"])
    for wf_id, wf in definitions.workflows.items():
        missing = sorted(set(wf.states) - reached[wf_id])
        log(f"  {wf_id:<26} {len(reached[wf_id])}/{len(wf.states)} states" + (f" (not reached: {', '.join(missing)})" if missing else ""))
    return reached


# ----------------------------------------------------------------------------- replication

def _shift(stamp: Any, delta: dt.timedelta) -> Any:
    if not isinstance(stamp, str) or len(stamp) < 19:
        return stamp
    try:
        return (dt.datetime.fromisoformat(stamp) - delta).isoformat(timespec="seconds")
    except ValueError:
        return stamp


class Replicator:
    """Copies of pool cases: new ids, dates moved back, org units moved across the same level."""

    def __init__(self, definitions: Any, pool: list[dict[str, Any]], rng: random.Random):
        self.org = definitions.org
        self.rng = rng
        self.pool = sorted(pool, key=lambda d: d["id"])
        self.size = self.pool[-1]["id"]
        self.levels: dict[str, list[str]] = {}
        for unit in self.org.units.values():
            self.levels.setdefault(unit.level, []).append(unit.id)
        engine = Engine(definitions, MemoryStore())
        self.unit_fields: dict[str, list[str]] = {}
        self.case_fields: dict[str, list[str]] = {}
        for wf_id, wf in definitions.workflows.items():
            fields = [f for _, f in engine.data_fields(wf)]
            self.unit_fields[wf_id] = sorted({f.id for f in fields if f.type == "orgunit"})
            self.case_fields[wf_id] = sorted({f.id for f in fields if f.type == "case"})

    def _move_unit(self, value: Any, old: str, new: str) -> Any:
        """Where a unit named in the data goes when the case moves from ``old`` to ``new``."""
        if not isinstance(value, str) or value not in self.org.units:
            return value
        if value == old:
            return new
        level = self.org.units[value].level
        if self.org.contains(value, old):  # an ancestor of the case's unit: the new unit's ancestor at that level
            return self.org.ancestor_at(new, level) or value
        if self.org.contains(old, value):  # below the case's unit: a unit at that level below the new one
            below = [u for u in self.levels.get(level, []) if self.org.contains(new, u)]
            return self.rng.choice(below) if below else value
        return value

    def copy(self, doc: dict[str, Any], batch: int, limit: int) -> dict[str, Any]:
        offset = batch * self.size
        out = json.loads(json.dumps(doc))
        out["id"] = doc["id"] + offset
        if out.get("parent"):
            out["parent"] = out["parent"] + offset if out["parent"] + offset <= limit else out["parent"]
        wf = out["workflow"]
        for name in self.case_fields.get(wf, []):
            value = out["data"].get(name)
            if isinstance(value, int) and value + offset <= limit:
                out["data"][name] = value + offset
        # dates: the whole case moves back together, at most 24 months
        delta = dt.timedelta(days=self.rng.randint(0, DAYS_SPREAD), hours=self.rng.randint(0, 23))
        out["created_at"] = _shift(out["created_at"], delta)
        out["updated_at"] = _shift(out["updated_at"], delta)
        for entry in out.get("history", []):
            entry["at"] = _shift(entry.get("at"), delta)
        for bucket in out.get("contributions", {}).values():
            for item in bucket.values():
                item["at"] = _shift(item.get("at"), delta)
        for objection in out.get("objections", []):
            objection["at"] = _shift(objection.get("at"), delta)
        # org unit: another unit of the same level; orgunit fields follow
        old = out["org_unit"]
        if old in self.org.units:
            new = self.rng.choice(self.levels[self.org.units[old].level])
            out["org_unit"] = new
            for name in self.unit_fields.get(wf, []):
                if name in out["data"]:
                    out["data"][name] = self._move_unit(out["data"][name], old, new)
        return out

    def docs(self, n: int) -> Iterable[dict[str, Any]]:
        """The first ``n`` cases: the pool as the engine made it, then shifted copies of it."""
        made = 0
        batch = 0
        while made < n:
            for doc in self.pool:
                if made >= n:
                    return
                yield dict(doc) if batch == 0 else self.copy(doc, batch, n)
                made += 1
            batch += 1


# ----------------------------------------------------------------------------- the instance

def pool_tables(key: str) -> dict[str, list[dict[str, Any]]]:
    path = INSTANCES / f"pool-{key}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    tables = build_pool()
    INSTANCES.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(tables, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return tables


def build(n: int, *, force: bool = False) -> Path:
    """The instance directory with ``n`` cases (built, or reused from the cache)."""
    key = source_hash()
    target = INSTANCES / f"{n}-{key}"
    if (target / "done.json").exists() and not force:
        log(f"instance {n}: reusing {target}")
        return target
    if target.exists():
        shutil.rmtree(target)
    tables = pool_tables(key)
    started = time.perf_counter()
    tmp = INSTANCES / f".{n}-{key}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "secret_key").write_text(secrets.token_hex(32))
    os.chmod(tmp / "secret_key", 0o600)
    store = TinyDBStore(tmp / "civicflow.json")
    Engine(load_definitions(ROOT), store)  # declares the read model's indexes: the final compaction saves them
    try:
        with store.transaction() as tx:
            for name in (USERS, *POOL_TABLES):
                for doc in tables.get(name, []):
                    tx.replace(name, doc["id"], doc)
        replicator = Replicator(load_definitions(ROOT), tables[CASES], random.Random(n))
        written = 0
        pending: list[dict[str, Any]] = []

        def flush() -> None:
            with store.transaction() as tx:
                for doc in pending:
                    tx.replace(CASES, doc["id"], doc)
            pending.clear()

        for doc in replicator.docs(n):
            pending.append(doc)
            written += 1
            if len(pending) >= BATCH:
                flush()
                if written % (BATCH * 5) == 0 or written == n:
                    log(f"instance {n}: {written} cases written, {time.perf_counter() - started:.0f}s")
        if pending:
            flush()
        store.compact()
    finally:
        store.close()
    size = (tmp / "civicflow.json").stat().st_size
    (tmp / "done.json").write_text(json.dumps({"cases": n, "hash": key, "bytes": size,
                                              "built_at": dt.datetime.now(SHANGHAI).isoformat(timespec="seconds"),
                                              "seconds": round(time.perf_counter() - started, 1)}))
    os.replace(tmp, target)
    log(f"instance {n}: {n} cases, {size / 1e6:.1f} MB, in {time.perf_counter() - started:.1f}s -> {target}")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000, 100000])
    parser.add_argument("--force", action="store_true", help="rebuild even if a cached instance exists")
    args = parser.parse_args(argv)
    for n in args.sizes:
        print(build(n, force=args.force))


if __name__ == "__main__":
    main()
