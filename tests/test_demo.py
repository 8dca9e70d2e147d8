"""The demo data loads into an empty instance through real transitions, and never over existing data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.cases import CASES
from engine.loader import load_definitions
from engine.runtime import Engine
from engine.store import open_store
from engine.users import find_user

ROOT = Path(__file__).resolve().parents[1]


def civicflow(*args: str, instance: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CIVICFLOW_HOME": str(ROOT), "CIVICFLOW_INSTANCE": str(instance)}
    return subprocess.run([sys.executable, "-m", "engine.web.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_demo_loads_every_scenario_once(tmp_path: Path):
    instance = tmp_path / "instance"
    first = civicflow("demo", instance=instance)
    assert first.returncode == 0, first.stderr
    assert "demo users" in first.stdout and "demo cases" in first.stdout
    again = civicflow("demo", instance=instance)
    assert "not loaded" in again.stdout
    store = open_store(str(instance / "civicflow.json"))
    try:
        engine = Engine(load_definitions(ROOT), store)
        cases = [c for c in store.search(CASES)]
        workflows = {c["workflow"] for c in cases}
        assert workflows == set(engine.definitions.workflows)  # every shipped process has demo cases
        for wid in workflows:
            states = {c["state"] for c in cases if c["workflow"] == wid}
            assert len(states) >= 2, f"{wid}: demo cases are all in {states}"
        recorded = [c["id"] for c in cases if c["data"].get("recorder") == "grid2" and c["state"] == "draft"]
        assert recorded and set(recorded) <= {c.id for c in engine.inbox(find_user(store, "grid2"))}  # he records it
    finally:
        store.close()
