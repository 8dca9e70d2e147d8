"""Mutation fuzz of the shipped definitions: a broken YAML file is reported as file:line, never as a traceback.

Each mutant is the shipped definitions (org/, forms/, workflows/) in a temporary directory with one file
changed: lines deleted, a value swapped for one of another type, indentation broken, an unknown key added,
bytes that are not UTF-8, control characters, an empty, a whitespace-only or a huge file, deep nesting. For
each, ``civicflow lint DIR`` (the real command, through click's runner) must either pass or print only
``file:line:col: ...`` problems, and the app's start path (``create_app`` on that directory, as ``civicflow
serve`` and ``run`` build it) must either start or raise DefinitionError, which ``civicflow`` prints as the
same list. A fixed seed picks a few hundred mutants; ``CIVICFLOW_FUZZ_MUTANTS`` / ``CIVICFLOW_FUZZ_SEED``
(or a hypothesis profile other than the default, e.g. ``--hypothesis-profile=fuzz-long``) try more.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner
from hypothesis import settings

from engine import loader
from engine.errors import DefinitionError
from engine.web import create_app
from engine.web.cli import cli
from tests.conftest import report

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p.relative_to(ROOT) for d in ("org", "forms", "workflows") for p in (ROOT / d).glob("*.yaml"))
#: Mutants per suite run: each is one whole load of the definitions (about 0.4 s on an idle machine, several
#: seconds on a loaded one), so the suite keeps to a sample; longer runs: see the module docstring.
MUTANTS = 24
#: The app is started on every mutant lint passes, and on every START_EVERY-th it reports (the start loads the
#: definitions through the same function as lint, whose failures are not cached: a second whole load).
START_EVERY = 4
#: How every line of ``civicflow lint`` output about a problem starts: the file, its line and column.
PROBLEM_LINE = re.compile(r"^\S.*?\.yaml(@v\d+)?:\d+:\d+: ")

SWAPS = ["[]", "{}", "[a, b]", "{zh: x, en: y}", "0", "-1", "1.5", "1e999", ".nan", ".inf", "true", "null", "~", "''",
         '"text"', "2024-01-01", "12:30", "!!binary aGVsbG8=", "&anchor x", "*nosuchalias", "!!python/object:os.system",
         "!custom x", "!!set {a, b}", "!!omap [a: 1]", "'unterminated", "[unclosed", "{unclosed", "x: y: z", "- item",
         "|\n  block", ">-", "@reserved", "`tick", "%directive", "? complex", "\"\\x00\"", "'\U0001F600'", "a" * 3000]
KEYS = ["unknown_key: 1", "lable: {zh: 标签}", "id: duplicate_id", "fields: 3", "states: []", "type: nosuchtype",
        "transitions: {a: b}", "roles: nosuchrole", "<<: {a: 1}", "? [a, b]\n: c", "'': empty", "123: number_key",
        "true: boolean_key", "null: x", "x" * 1000 + ": long"]


@dataclass
class Mutant:
    file: Path
    how: str
    data: bytes


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True) or [""]


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" "))]


def _mutate(rng: random.Random, file: Path, text: str) -> Mutant:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    how = rng.choice(["delete", "delete", "swap", "swap", "swap", "indent", "key", "key", "bytes", "control",
                      "empty", "huge", "nesting", "duplicate", "truncate", "tabs", "bom", "crlf", "anchors"])
    out = list(lines)
    if how == "delete":
        del out[i:i + rng.choice([1, 1, 2, 5])]
    elif how == "swap":
        candidates = [n for n, line in enumerate(lines) if re.search(r"(:\s|-\s)\S", line)] or [i]
        n = rng.choice(candidates)
        line = lines[n]
        match = rng.choice(list(re.finditer(r"(?<=:\s)[^,{}\[\]\n]+|(?<=-\s)[^,{}\[\]\n]+", line)) or [None])
        value = rng.choice(SWAPS)
        out[n] = line[: match.start()] + value + line[match.end():] if match else line.rstrip("\n") + " " + value + "\n"
    elif how == "indent":
        line = lines[i]
        shift = rng.choice([-4, -2, -1, 1, 2, 3])
        out[i] = line[-shift:] if shift < 0 and line.startswith(" " * -shift) else " " * max(shift, 1) + line
    elif how == "key":
        out.insert(i, _indent_of(lines[i]) + rng.choice(KEYS) + "\n")
    elif how == "duplicate":
        out.insert(i, lines[i])
    elif how == "truncate":
        joined = "".join(lines)
        out = [joined[: rng.randrange(len(joined) + 1)]]
    elif how == "tabs":
        out[i] = lines[i].replace("  ", "\t", 1)
    elif how == "bom":
        out = ["\ufeff"] + out
    elif how == "crlf":
        out = [line.replace("\n", "\r\n") for line in out]
    elif how == "empty":
        return Mutant(file, how, rng.choice([b"", b"   \n\n", b"---\n", b"# only a comment\n", b"...\n", b"- a list\n",
                                             b"just a string\n", b"\n---\nid: two\n---\nid: docs\n"]))
    elif how == "huge":
        kind = rng.choice(["repeat", "line", "value"])
        if kind == "repeat":  # every key repeated: beyond the loader's 1 MB, or within it (a slower parse)
            return Mutant(file, how + ":repeat", text.encode() * rng.choice([400, 10]))
        if kind == "line":
            out.insert(i, "# " + "长" * 500_000 + "\n")
        else:
            out.insert(i, _indent_of(lines[i]) + "description: " + "x" * 1_000_000 + "\n")
    elif how == "nesting":
        depth = rng.choice([50, 500, 5000])
        out.insert(i, _indent_of(lines[i]) + "deep: " + "[" * depth + "]" * depth + "\n")
    elif how == "anchors":
        # a small "billion laughs": aliases that expand to 10**5 items if copied naively
        bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"] + [
            f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]\n" for k in range(1, 5)]
        out = bomb + out
    data = "".join(out).encode("utf-8", "surrogatepass")
    if how == "bytes":
        pos = rng.randrange(len(data) + 1)
        data = data[:pos] + rng.choice([b"\xff", b"\xfe\xff", b"\xc3", b"\x80\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]) + data[pos:]
    elif how == "control":
        pos = rng.randrange(len(data) + 1)
        data = data[:pos] + rng.choice([b"\x00", b"\x07", b"\x1b[31m", b"\x7f", b"\x85", "\u2028".encode()]) + data[pos:]
    return Mutant(file, how, data)


def mutants(count: int, seed: int) -> Iterator[Mutant]:
    rng = random.Random(seed)
    originals = {f: (ROOT / f).read_text(encoding="utf-8") for f in FILES}
    for _ in range(count):
        file = rng.choice(FILES)
        yield _mutate(rng, file, originals[file])


# --------------------------------------------------------------------------- running a mutant


def _count() -> tuple[int, int]:
    count = int(os.environ.get("CIVICFLOW_FUZZ_MUTANTS", "0"))
    if not count and settings.get_current_profile_name() != "default":
        count = settings().max_examples
    return count or MUTANTS, int(os.environ.get("CIVICFLOW_FUZZ_SEED", "14"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("definitions")
    for d in ("org", "forms", "workflows"):
        shutil.copytree(ROOT / d, root / d)
    return root


REPORTED: list[Path] = []  # the mutants lint found problems in (most should be: else the fuzz tests little)


def _lint_failure(root: Path) -> str | None:
    """What is wrong with what ``civicflow lint`` did on ``root`` (None: it passed, or listed file:line problems)."""
    loader._LOADED.clear()  # a mutant may have the size and time stamp of the file it replaced
    result = CliRunner().invoke(cli, ["lint", str(root)], catch_exceptions=True)
    if result.exit_code == 1:
        REPORTED.append(root)
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "lint raised " + "".join(traceback.format_exception(result.exception))[-3000:]
    if "Traceback" in output:
        return "lint printed a traceback:\n" + output[-3000:]
    if result.exit_code == 0:
        return None if output.strip().endswith(": ok") else f"lint passed without saying ok: {output[-500:]!r}"
    problems = [line for line in output.splitlines() if line.strip()]
    if result.exit_code != 1 or not problems:
        return f"lint exited {result.exit_code} with {output[-500:]!r}"
    unplaced = [line for line in problems if not PROBLEM_LINE.match(line)]
    if unplaced:
        return "lint printed problems without file:line:col:\n" + "\n".join(unplaced[:5])[:3000]
    return None


def _start_failure(root: Path, tmp: Path) -> str | None:
    """What is wrong with starting the app on ``root`` (None: it started, or refused with DefinitionError).
    Right after :func:`_lint_failure` the definitions come from the loader's cache: the same load, then the
    engine built on it."""
    try:
        app = create_app({"TESTING": True, "SECRET_KEY": "fuzz", "STORE": "memory", "DEFINITIONS": str(root),
                          "UPLOADS": str(tmp / "uploads")}, start_timers=False)
    except DefinitionError as exc:
        unplaced = [str(p) for p in exc.problems if not PROBLEM_LINE.match(str(p)) or p.line < 1]
        return ("start: problems without file:line: " + "; ".join(unplaced[:5])) if unplaced or not exc.problems else None
    except Exception as exc:  # noqa: BLE001 - exactly what must not happen
        return "start raised " + "".join(traceback.format_exception(exc))[-3000:]
    app.extensions["civicflow"].store.close()
    return None


def _try(tree: Path, tmp: Path, mutant: Mutant, check: Callable[[Path], str | None]) -> str | None:
    target = tree / mutant.file
    original = target.read_bytes()
    target.write_bytes(mutant.data)
    try:
        return check(tree)
    finally:
        target.write_bytes(original)


def test_no_mutant_of_the_shipped_definitions_gets_a_traceback_from_lint_or_start(tree: Path, tmp_path: Path,
                                                                                  request: pytest.FixtureRequest):
    count, seed = _count()
    tried, failures, kinds = 0, [], {}
    REPORTED.clear()
    began = time.monotonic()
    for n, mutant in enumerate(mutants(count, seed)):
        tried += 1
        kinds[mutant.how] = kinds.get(mutant.how, 0) + 1
        reported = len(REPORTED)
        problem = _try(tree, tmp_path, mutant, _lint_failure)
        if not problem and (len(REPORTED) == reported or n % START_EVERY == 0):
            problem = _try(tree, tmp_path, mutant, lambda root: _start_failure(root, tmp_path))
        if problem:
            failures.append(f"mutant {n} ({mutant.how} in {mutant.file}): {problem}")
    line = (f"definitions fuzz: {tried} mutants tried (seed {seed}), {len(failures)} failed, {len(REPORTED)} reported "
            f"by lint, "
            f"{time.monotonic() - began:.0f} s; kinds {dict(sorted(kinds.items()))}")
    report(request, line)
    assert not failures, f"{len(failures)} of {tried} mutants:\n\n" + "\n\n".join(failures[:8])
    assert len(REPORTED) >= tried // 2, "most mutants should be broken definitions, or the fuzz tests little"


def test_civicflow_run_on_broken_definitions_prints_the_problems_and_no_traceback(tmp_path: Path):
    """The real command, in its own process: ``civicflow run`` stops with the file:line list."""
    for d in ("org", "forms", "workflows"):
        shutil.copytree(ROOT / d, tmp_path / d)
    (tmp_path / "forms" / "micro_wish.yaml").write_bytes(b"id: micro_wish\nversion: 1\nfields: \xff\n")
    (tmp_path / "workflows" / "micro_wish.yaml").write_text("id: micro_wish\n  bad: indent\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICFLOW_")}
    env.update({"CIVICFLOW_HOME": str(tmp_path), "CIVICFLOW_INSTANCE": str(tmp_path / "instance")})
    done = subprocess.run([sys.executable, "-m", "engine.web.cli", "run", "--port", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "forms/micro_wish.yaml:3:" in done.stderr and "workflows/micro_wish.yaml:2:" in done.stderr, done.stderr


# --------------------------------------------------------------------------- what the fuzz found, kept as examples


@pytest.mark.parametrize(("data", "where", "message"), [
    (b"roles:\n  deep: " + b"[" * 5000 + b"]" * 5000 + b"\n", "org/roles.yaml:2:", "nested more than 64 levels deep"),
    ("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".encode() + b"".join(
        f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]\n".encode() for k in range(1, 7)),
     "org/roles.yaml:1:", "more than 100000 values"),
    (b"roles:\n  resident: {title: \x07x}\n", "org/roles.yaml:2:", "special characters are not allowed"),
    (b"roles:\n  resident:\n    <<: {a: 1}\n    title: {zh: x}\n", "org/roles.yaml:3:5:", "unknown key 'a'"),
    (b"roles:\n" + b"  # pasted\n" * 200_000, "org/roles.yaml:1:1:", "the file is too large (2.2 MB; at most 1 MB)"),
    (b"roles:\n  resident: {title: \xff}\n", "org/roles.yaml:2:21:", "not UTF-8 text: byte 0xff"),
])
def test_a_file_too_deep_too_large_or_not_text_is_a_problem_at_its_line(tree: Path, data: bytes, where: str,
                                                                          message: str):
    mutant = Mutant(Path("org/roles.yaml"), "example", data)
    output = _try(tree, tree, mutant, lambda root: _lint_output(root))
    assert "Traceback" not in output
    line = next(line for line in output.splitlines() if message in line)
    assert where in line, output


def _lint_output(root: Path) -> str:
    loader._LOADED.clear()
    result = CliRunner().invoke(cli, ["lint", str(root)])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output
