"""The `civicflow` command as an admin uses it: lint, a broken definition at start, users, demo data."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def civicflow(*args: str, home: Path = ROOT, instance: Path | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "CIVICFLOW_HOME": str(home)}
    if instance is not None:
        env["CIVICFLOW_INSTANCE"] = str(instance)
    return subprocess.run([sys.executable, "-m", "engine.web.cli", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=60)


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    home = tmp_path / "defs"
    for part in ("org", "forms", "workflows", "demo"):
        shutil.copytree(ROOT / part, home / part)
    wf = home / "workflows" / "volunteer_registration.yaml"
    wf.write_text(wf.read_text(encoding="utf-8").replace("to: active", "to: activ"), encoding="utf-8")
    return home


def test_lint_passes_on_the_shipped_definitions():
    result = civicflow("lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": ok")


def test_lint_reports_file_line_and_hint(broken: Path):
    result = civicflow("lint", str(broken))
    assert result.returncode == 1
    assert ("workflows/volunteer_registration.yaml:23:13: states.submitted.transitions[0].to: "
            "unknown state 'activ' (did you mean 'active'?)") in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_lint_of_one_file_shows_only_its_problems(broken: Path):
    ok = civicflow("lint", str(broken / "forms" / "volunteer_application.yaml"))
    assert ok.returncode == 0
    bad = civicflow("lint", str(broken / "workflows" / "volunteer_registration.yaml"))
    assert bad.returncode == 1 and "unknown state 'activ'" in bad.stdout


def test_run_with_a_broken_definition_lists_problems_and_exits(broken: Path, tmp_path: Path):
    result = civicflow("run", "--port", "5999", home=broken, instance=tmp_path / "instance")
    assert result.returncode == 1
    assert "unknown state 'activ'" in result.stderr and "Traceback" not in result.stderr
    assert "civicflow lint" in result.stderr


def test_demo_users_load_once_and_user_add(tmp_path: Path):
    instance = tmp_path / "instance"
    first = civicflow("demo", instance=instance)
    assert first.returncode == 0 and "loaded 23 demo users" in first.stdout, first.stderr
    again = civicflow("demo", instance=instance)
    assert "not loaded" in again.stdout  # never over existing data
    added = civicflow("user", "add", "liwei", "--name", "李伟", "--role", "grid_worker", "--unit", "renjia-g2",
                      "--password", "secret-pass9", instance=instance)
    assert added.returncode == 0, added.stderr
    listing = civicflow("user", "list", instance=instance).stdout
    assert "liwei" in listing and "grid_worker" in listing and "renjia-g2" in listing
    bad = civicflow("user", "add", "x", "--role", "wizard", "--unit", "renjia", "--password", "secret-pass9",
                    instance=instance)
    assert bad.returncode != 0 and "unknown role" in bad.stderr and "Traceback" not in bad.stderr
    assert (instance / "civicflow.json.journal").exists() or (instance / "civicflow.json").exists()
