"""Claims and redemptions from two OS processes on the same TinyDB file: exactly one claim wins, no overdraw."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine import ledger
from engine.clock import FrozenClock
from engine.loader import load_definitions
from engine.runtime import Engine
from engine.store import open_store
from engine.users import User
from tests.conftest import GOVERNANCE_USERS, add_users, governance_dir

WORKER = Path(__file__).with_name("governance_worker.py")
U = {name: User(name, full, tuple(roles), unit) for name, full, roles, unit in GOVERNANCE_USERS}


def run_workers(defs: Path, db: Path, mode: str, jobs: list[tuple[str, list[int]]]) -> list[dict]:
    """Start one process per (username, case ids), release them together, collect what each won."""
    procs = []
    for name, ids in jobs:
        user = U[name]
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), str(defs), str(db), mode, name, ",".join(user.roles), user.org_unit,
             *map(str, ids)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for p in procs:  # go: both are loaded and waiting
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        results.append(json.loads(out))
    return results


def test_two_processes_claiming_the_same_wishes(tmp_path: Path):
    defs, db = governance_dir(tmp_path), tmp_path / "shared.json"
    store = open_store(str(db))
    add_users(store, GOVERNANCE_USERS)
    engine = Engine(load_definitions(defs), store, clock=FrozenClock())
    ids = [engine.start("wish", U["grid"], {"wish_title": f"心愿 {i}", "grid": "renjia-g1"}).id for i in range(30)]
    store.close()

    results = run_workers(defs, db, "claim", [("party", ids), ("party2", ids)])

    won = [cid for r in results for cid in r["won"]]
    assert sorted(won) == ids  # every wish claimed exactly once, none twice
    assert sum(len(r["refused"]) for r in results) == len(ids)
    store = open_store(str(db))
    engine = Engine(load_definitions(defs), store)
    for cid, r in ((cid, r) for r in results for cid in r["won"]):
        case = engine.get(cid)
        assert case.state == "claimed" and len(case.assignees) == 1
    store.close()


def test_two_processes_redeeming_from_one_balance(tmp_path: Path):
    defs, db = governance_dir(tmp_path), tmp_path / "shared.json"
    store = open_store(str(db))
    add_users(store, GOVERNANCE_USERS)
    engine = Engine(load_definitions(defs), store, clock=FrozenClock())
    with store.transaction() as tx:
        ledger.post(tx, "volunteer", 200, reason={"zh": "初始", "en": "seed"}, case_id=None, workflow=None,
                    transition=None, by="admin", now=engine.clock())
    first = [engine.start("redeem", U["volunteer"], {"reward": "soap", "grid": "renjia-g1"}).id for _ in range(10)]
    second = [engine.start("redeem", U["volunteer"], {"reward": "soap", "grid": "renjia-g1"}).id for _ in range(10)]
    store.close()

    # the owner in one process, community staff in another, each redeeming a different batch of 10 x 20 points
    results = run_workers(defs, db, "redeem", [("volunteer", first), ("staff", second)])

    wins = sum(len(r["won"]) for r in results)
    assert wins == 10  # 200 points buy exactly ten 20-point rewards
    store = open_store(str(db))
    engine = Engine(load_definitions(defs), store)
    assert engine.balance("volunteer") == 0
    assert [e["balance"] >= 0 for e in engine.ledger_of("volunteer")] == [True] * 11
    assert ledger.verify(store) == []
    store.close()

