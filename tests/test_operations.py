"""docs/operations.md and docs/civicflow.service describe what really runs.

* The unit's ``ExecStartPre`` and ``ExecStart`` command lines are started as systemd would start them (its
  ``Environment=`` lines, with a temporary instance and a free port instead of the real ones); the server must
  answer ``/healthz`` and stop with exit status 0 on the unit's ``KillSignal``.
* Every environment variable the code reads is in the guide's settings table, and every row of the table is
  read by the code (or marked as being built).
* Every ``civicflow`` command the guide's shell examples use exists (``--help`` answers), except the ones the
  guide says are being built, which must not exist yet: when they arrive, this test asks for the guide to say so.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click

from .conftest import ROOT

UNIT = ROOT / "docs" / "civicflow.service"
GUIDE = ROOT / "docs" / "operations.md"
TEXT = GUIDE.read_text(encoding="utf-8")
#: Commands the guide describes before they exist (the PostgreSQL store's migrations, issue 10 point 2).
BEING_BUILT = {("db", "upgrade")}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values]}}``; systemd allows a key more than once (``Environment=``), and a ``#``
    only starts a comment at the beginning of a line."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {line!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_started_here(command: str, port: int) -> list[str]:
    """The unit's command line with its ``civicflow`` run from this checkout and ``--port`` a free one."""
    argv = shlex.split(command)
    assert argv[0].endswith("/.venv/bin/civicflow"), argv[0]
    argv = [sys.executable, "-m", "engine.web.cli", *argv[1:]]
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    return argv


def test_the_unit_file_command_line_starts_a_server_that_answers_healthz(tmp_path: Path):
    service = parse_unit(UNIT)["Service"]
    env = dict(os.environ)
    for assignment in service.get("Environment", []):
        for item in shlex.split(assignment):
            key, _, value = item.partition("=")
            env[key] = value
    assert env["CIVICFLOW_INSTANCE"] == "/var/lib/civicflow" and env["CIVICFLOW_HOME"] == "/opt/civicflow"
    env.update(CIVICFLOW_INSTANCE=str(tmp_path / "instance"), CIVICFLOW_HOME=str(ROOT),
               CIVICFLOW_SECRET_KEY="a-test-secret-of-32-characters!!")
    assert all(v.startswith("-") for v in service.get("EnvironmentFile", [])), "a missing env file must not stop it"
    port = free_port()
    for pre in service.get("ExecStartPre", []):
        result = subprocess.run(as_started_here(pre, port), env=env, cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
    (start,) = service["ExecStart"]
    process = subprocess.Popen(as_started_here(start, port), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline, answer = time.monotonic() + 60, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    answer = (response.status, json.loads(response.read()))
                    break
            except OSError:
                time.sleep(0.2)
        assert answer is not None, f"no answer on port {port}; exit {process.poll()}"
        assert answer[0] == 200 and answer[1]["status"] == "ok"
        kill = getattr(signal, (service.get("KillSignal") or ["SIGTERM"])[0])
        process.send_signal(kill)
        stop_seconds = float((service.get("TimeoutStopSec") or ["90"])[0])
        assert process.wait(timeout=stop_seconds) == 0
    finally:
        if process.poll() is None:
            process.kill()
        _out, err = process.communicate(timeout=10)
    assert "Traceback" not in err


def test_the_settings_table_and_the_code_name_the_same_variables():
    code = {name for path in (ROOT / "engine").rglob("*.py")
            for name in re.findall(r"CIVICFLOW_[A-Z_]+", path.read_text(encoding="utf-8"))}
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(CIVICFLOW_[A-Z_]+)` \|.*$", TEXT, re.M)}
    assert code - set(rows) == set(), "read by the code but not in docs/operations.md"
    extra = {name for name in set(rows) - code if "being built" not in rows[name]}
    assert extra == set(), "in docs/operations.md but read nowhere"


def documented_commands() -> set[tuple[str, ...]]:
    from engine.web.cli import cli, db_group, user_group

    groups = {name for name, c in [*cli.commands.items(), ("user", user_group), ("db", db_group)]
              if isinstance(c, click.Group)}
    found = set()
    for block in re.findall(r"```sh\n(.*?)```", TEXT, re.S):
        for match in re.finditer(r"(?:^|bin/)civicflow ([a-z][\w-]*(?: [a-z][\w-]*)?)", block, re.M):
            words = match.group(1).split()
            found.add(tuple(words[:2]) if words[0] in groups and len(words) > 1 else (words[0],))
    return found


def test_the_guide_uses_commands_that_exist():
    commands = documented_commands()
    assert {("serve",), ("backup",), ("restore",), ("db", "copy"), ("tick",), ("user", "add")} <= commands
    env = {**os.environ, "CIVICFLOW_HOME": str(ROOT)}
    for command in sorted(commands):
        result = subprocess.run([sys.executable, "-m", "engine.web.cli", *command, "--help"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        if command in BEING_BUILT:
            assert result.returncode != 0, f"`civicflow {' '.join(command)}` exists now: drop it from BEING_BUILT " \
                                           f"and the 'being built' notes in docs/operations.md"
            assert "being built" in TEXT
        else:
            assert result.returncode == 0, f"`civicflow {' '.join(command)}` in docs/operations.md: {result.stderr}"
