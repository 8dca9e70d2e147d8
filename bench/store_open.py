"""How long does a TinyDBStore take to open (and how much memory does it hold) as the cases grow?

    python bench/store_open.py [--sizes 1000,10000,100000] [--before REV] [--quick] [--json out.json] [--dir DIR]

For each size N, a store is filled with N case-like documents (~2.4 KB of JSON each, as the
engine stores them) with an index (keys: the (workflow, state, unit) triple and the assignee;
order: ``updated_at``) and a tally (cases per workflow and month) declared, then compacted, which
writes the snapshot and its ``.offsets`` sidecar. Each open runs in a fresh process, in the same
run, three ways:

``full``     the sidecar moved aside: the whole snapshot is parsed and the index functions run on
             every case (what every open did before the sidecar existed);
``sidecar``  the sidecar in place: documents stay unparsed until read, indexes come from the sidecar;
``+journal`` the sidecar in place and a journal just under the compaction threshold (snapshot/16),
             the worst case a process meets when it opens;
``before``   with ``--before REV``: the same files opened by the store code of git revision REV
             (e.g. the commit before the sidecar), to check ``full`` is what opening used to cost.

Reported per way: open time (``TinyDBStore(path)`` plus ``add_index`` of both, as the engine does),
resident memory after opening (VmRSS, and the part of it that is the mapped snapshot), a first
inbox-like page (20 newest of one key) and a ``get``, a full-table ``count`` with a predicate
(parses every case when lazy), the first commit (without a sidecar it compacts, to write one) and
then one compaction. The files are in the page cache (warm).
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if os.environ.get("STORE_OPEN_ENGINE"):  # --before: the child imports an older engine/
    sys.path.insert(0, os.environ["STORE_OPEN_ENGINE"])

from engine.store import TinyDBStore  # noqa: E402
from engine.store.base import Index, Tally  # noqa: E402
from engine.store import tinydb_store  # noqa: E402

JOURNAL_FRACTION = getattr(tinydb_store, "JOURNAL_FRACTION", 16)

WORKFLOWS = ["service_order", "wish", "problem_report", "award", "volunteer", "appraisal", "points", "meeting"]
STATES = ["draft", "submitted", "verified", "dispatched", "accepted", "done", "rated", "closed"]
UNITS = [f"unit-{n:02d}" for n in range(40)]
TITLES = ["楼道灯坏了", "独居老人需要上门理发", "小区门口垃圾堆放", "邻里噪音纠纷", "申请积分兑换"]

# An older engine (--before) has no ``version`` field.
_VERSION = {"version": "1"} if "version" in Index.__dataclass_fields__ else {}
BY_PLACE = Index("by_place", "cases",
                 keys=lambda d: [("at", d["workflow"], d["state"], d["unit"]), ("person", d["assignee"])],
                 order=lambda d: d["updated_at"], **_VERSION)
PER_MONTH = Tally("per_month", "cases", values=lambda d: [((d["workflow"], d["created_at"][:7]), 1)], **_VERSION)


def make_case(i: int, rng: random.Random) -> dict[str, Any]:
    """A case as the engine stores it: workflow, state, unit, data and history; ~2.4 KB as stored JSON."""
    day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    steps = [("submit", "draft", "submitted"), ("verify", "submitted", "verified"),
             ("dispatch", "verified", "dispatched"), ("accept", "dispatched", "accepted"),
             ("finish", "accepted", "done")]
    history = [
        {"at": f"{day}T{h:02d}:{rng.randint(0, 59):02d}:00+08:00", "by": f"user{rng.randrange(500)}",
         "transition": t, "from": a, "to": b, "comment": "已核实，按流程办理", "version": h - 8}
        for h, (t, a, b) in enumerate(steps, start=9)
    ]
    return {
        "schema_version": 1, "workflow": rng.choice(WORKFLOWS), "workflow_version": 3,
        "state": rng.choice(STATES), "version": 5, "unit": rng.choice(UNITS),
        "assignee": f"user{rng.randrange(2000)}", "waiting_for": rng.choice(["grid_worker", "secretary", "staff"]),
        "created_at": f"{day}T08:{rng.randint(0, 59):02d}:00+08:00", "created_by": f"user{rng.randrange(2000)}",
        "updated_at": f"{day}T{rng.randint(9, 18):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}+08:00",
        "data": {
            "title": rng.choice(TITLES), "name": "张三", "phone": f"138{rng.randrange(10**8):08d}",
            "address": f"{rng.randint(1, 30)}栋{rng.randint(1, 6)}单元{rng.randint(101, 1802)}",
            "description": "居民反映情况，需要网格员上门核实处理。" * 7,
            "attachments": [{"key": f"up-{i}-{k}", "name": f"照片{k}.jpg", "size": rng.randrange(10**6)}
                            for k in range(3)],
            "priority": rng.randint(1, 5),
            "tags": rng.sample(["elderly", "safety", "environment", "dispute", "points", "youth"], 2),
            "seq": i,
        },
        "history": history,
    }


def build(path: Path, n: int, rng: random.Random) -> None:
    with TinyDBStore(path, compact_bytes=1 << 62) as store:
        store.add_index(BY_PLACE)
        store.add_index(PER_MONTH)
        batch = 5000
        for start in range(0, n, batch):
            with store.transaction() as tx:
                for i in range(start, min(n, start + batch)):
                    tx.insert("cases", make_case(i, rng))
        store.compact()


def add_journal(path: Path, n: int, rng: random.Random) -> int:
    """Replace cases until the journal is just under the default compaction threshold; its size."""
    limit = max(1 << 20, path.stat().st_size // JOURNAL_FRACTION)
    journal = Path(f"{path}.journal")
    with TinyDBStore(path, compact_bytes=1 << 62) as store:
        store.add_index(BY_PLACE)
        store.add_index(PER_MONTH)
        per_tx = 20
        line = 2600 * per_tx  # about one transaction's journal line
        while journal.stat().st_size + line < limit:
            with store.transaction() as tx:
                for _ in range(per_tx):
                    doc_id = rng.randint(1, n)
                    case = tx.get("cases", doc_id)
                    case["state"], case["version"] = rng.choice(STATES), case["version"] + 1
                    tx.replace("cases", doc_id, case)
    return journal.stat().st_size


def rss() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def child(path: str) -> None:
    """Runs in a fresh process: open, measure, print one JSON line."""
    start = time.perf_counter()
    store = TinyDBStore(path)
    store.add_index(BY_PLACE)
    store.add_index(PER_MONTH)
    open_s = time.perf_counter() - start
    memory = rss()
    start = time.perf_counter()
    page = store.lookup("by_place", [("at", "service_order", "submitted", "unit-07")], limit=20)
    page_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    store.get("cases", 1 + len(page.docs))
    get_ms = (time.perf_counter() - start) * 1e3
    totals = store.totals("per_month")
    start = time.perf_counter()
    rated = store.count("cases", lambda d: d["state"] == "rated")
    scan_s = time.perf_counter() - start
    start = time.perf_counter()
    with store.transaction() as tx:
        tx.replace("cases", 1, {**tx.get("cases", 1), "state": "done"})
    commit_s = time.perf_counter() - start
    start = time.perf_counter()
    store.compact()
    compact_s = time.perf_counter() - start
    store.close()
    print(json.dumps({"open_s": open_s, **memory, "page_ms": page_ms, "page_total": page.total,
                      "get_ms": get_ms, "scan_s": scan_s, "rated": rated, "tally_keys": len(totals),
                      "commit_s": commit_s, "compact_s": compact_s}))


def run_child(path: Path, engine_root: Path | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    if engine_root is not None:
        env["STORE_OPEN_ENGINE"] = str(engine_root)
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"the child process failed on {path}:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_size(n: int, workdir: Path, rng: random.Random, before: Path | None) -> dict[str, Any]:
    base = workdir / f"base-{n}"
    base.mkdir()
    path = base / "db.json"
    start = time.perf_counter()
    build(path, n, rng)
    build_s = time.perf_counter() - start
    row: dict[str, Any] = {"n": n, "snapshot_mb": path.stat().st_size / 1e6,
                           "doc_bytes": path.stat().st_size / n, "build_s": build_s,
                           "sidecar_mb": Path(f"{path}.offsets").stat().st_size / 1e6}
    ways = {}
    for way in ("before", "full", "sidecar", "+journal"):
        if way == "before" and before is None:
            continue
        copy = workdir / f"{way}-{n}"
        shutil.copytree(base, copy)  # each way compacts at its end: work on a copy
        target = copy / "db.json"
        if way in ("full", "before"):
            os.unlink(f"{target}.offsets")
        if way == "+journal":
            row["journal_mb"] = add_journal(target, n, rng) / 1e6
        ways[way] = run_child(target, before if way == "before" else None)
        shutil.rmtree(copy)
    shutil.rmtree(base)
    assert ways["full"]["page_total"] == ways["sidecar"]["page_total"]
    assert ways["full"]["rated"] == ways["sidecar"]["rated"]
    row["ways"] = ways
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| N cases | snapshot MB (sidecar MB) | way | open s | RSS MB (of it mapped file) | first page ms "
            "| get ms | count-all scan s | first commit s | compact s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        for way, w in r["ways"].items():
            label = {"+journal": f"+journal {r.get('journal_mb', 0):.1f} MB",
                     "before": f"before ({r.get('before_rev')})"}.get(way, way)
            lines.append(
                f"| {r['n']:,} | {r['snapshot_mb']:.0f} ({r['sidecar_mb']:.1f}) | {label} | {w['open_s']:.2f} "
                f"| {w['VmRSS']:.0f} ({w.get('RssFile', 0):.0f}) | {w['page_ms']:.1f} | {w['get_ms']:.2f} "
                f"| {w['scan_s']:.2f} | {w['commit_s']:.2f} | {w['compact_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--quick", action="store_true", help="1,000 cases: a smoke run")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--dir", help="where to put the files (default: a temp dir)")
    parser.add_argument("--before", metavar="REV", help="also open with the engine/ of this git revision")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    rng = random.Random(42)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        before = None
        if args.before:
            before = Path(tmp) / "before"
            before.mkdir()
            root = Path(__file__).resolve().parents[1]
            archive = subprocess.run(["git", "-C", str(root), "archive", args.before, "engine"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        for n in sizes:
            print(f"… {n:,} cases", file=sys.stderr, flush=True)
            rows.append(bench_size(n, Path(tmp), rng, before))
            rows[-1]["before_rev"] = args.before
    print(f"TinyDBStore open — Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}, ~{rows[0]['doc_bytes']:.0f} B per case as stored, "
          f"one index + one tally declared\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
