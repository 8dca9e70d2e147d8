"""How fast is the TinyDB file store, next to plain TinyDB, as the number of cases grows?

    python bench/store.py [--sizes 1000,10000,100000] [--writes 1000] [--quick] [--json out.json]

For each size N, a TinyDBStore is filled with N case-like documents (~1 KB of JSON
each) in one transaction, reopened, then timed: one write transaction (read a case,
change it, replace it; fsync included), get by id, and a search whose predicate looks
at every case. Compaction is timed on its own, with its cost spread over the writes
between two compactions. Plain TinyDB (default JSONStorage, which rewrites the whole
file per write) is timed inserting into a file of the same N cases, in the same run.
Prints a markdown table. Opening time and memory: bench/store_open.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinydb  # noqa: E402

from engine.store import TinyDBStore  # noqa: E402
from engine.store.tinydb_store import JOURNAL_FRACTION, encode_entry  # noqa: E402

STATES = ["draft", "submitted", "verified", "dispatched", "accepted", "done", "rated", "closed"]
COMMUNITIES = ["西递社区", "宏村社区", "黄石港社区", "五华社区", "杭锦旗社区"]
TITLES = ["楼道灯坏了", "独居老人需要上门理发", "小区门口垃圾堆放", "邻里噪音纠纷", "申请积分兑换"]


def make_case(i: int, rng: random.Random) -> dict[str, Any]:
    """A service-order case as the engine stores it: spec name, state, data, history."""
    day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    history = [
        {"at": f"{day}T{h:02d}:{rng.randint(0, 59):02d}:00+08:00", "by": f"user{rng.randrange(500)}",
         "transition": t, "from": a, "to": b, "comment": "已核实，按流程办理"}
        for h, (t, a, b) in enumerate([("submit", "draft", "submitted"), ("verify", "submitted", "verified"),
                                       ("dispatch", "verified", "dispatched")], start=9)
    ]
    return {
        "schema_version": 1,
        "workflow": "service_order",
        "workflow_version": 3,
        "state": rng.choice(STATES),
        "version": 3,
        "community": rng.choice(COMMUNITIES),
        "grid": f"grid-{rng.randrange(40):02d}",
        "created_at": f"{day}T08:{rng.randint(0, 59):02d}:00+08:00",
        "created_by": f"user{rng.randrange(500)}",
        "data": {
            "title": rng.choice(TITLES),
            "name": "张三",
            "phone": f"138{rng.randrange(10**8):08d}",
            "address": f"{rng.randint(1, 30)}栋{rng.randint(1, 6)}单元{rng.randint(101, 1802)}",
            "description": "居民反映情况，需要网格员上门核实处理。" * 2,
            "priority": rng.randint(1, 5),
            "tags": rng.sample(["elderly", "safety", "environment", "dispute", "points", "youth"], 2),
            "seq": i,
        },
        "history": history,
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_size(n: int, workdir: Path, counts: dict[str, int], rng: random.Random) -> dict[str, Any]:
    cases = [make_case(i, rng) for i in range(n)]
    doc_bytes = statistics.mean(len(json.dumps(c)) for c in cases[:200])
    path = workdir / f"store-{n}.json"

    start = time.perf_counter()
    with TinyDBStore(path) as store, store.transaction() as tx:
        for case in cases:
            tx.insert("cases", case)
    fill_s = time.perf_counter() - start

    start = time.perf_counter()
    store = TinyDBStore(path)
    open_s = time.perf_counter() - start
    snapshot_mb = path.stat().st_size / 1e6

    def write() -> None:
        doc_id = rng.randint(1, n)
        with store.transaction() as tx:
            case = tx.get("cases", doc_id)
            case["state"] = rng.choice(STATES)
            case["version"] += 1
            tx.replace("cases", doc_id, case)

    journal = Path(store.journal_path)
    compactions = 0
    writes = []
    for _ in range(counts["writes"]):
        before = journal.stat().st_size
        writes += timed(write, 1)
        compactions += journal.stat().st_size < before
    gets = timed(lambda: store.get("cases", rng.randint(1, n)), counts["gets"])
    searches = timed(lambda: store.search("cases", lambda c: c["state"] == "rated"
                                          and c["data"]["priority"] >= 4), counts["searches"])
    compact_s = min(timed(store.compact, counts["compactions"]))
    # The journal compacts when it outgrows max(1 MiB, snapshot / 16): one compaction per that many writes.
    line_bytes = len(encode_entry(1, [("cases", "1", store.get("cases", 1))]))
    writes_per_compaction = max(1 << 20, path.stat().st_size // JOURNAL_FRACTION) / line_bytes
    store.close()

    plain_path = workdir / f"plain-{n}.json"
    plain_path.write_text(json.dumps({"cases": {str(i + 1): c for i, c in enumerate(cases)}}))
    plain_n = counts["plain"] if n <= 10_000 else max(1, counts["plain"] // 10)
    with tinydb.TinyDB(plain_path) as db:
        table = db.table("cases")
        plain = timed(lambda: table.insert(make_case(n, rng)), plain_n)

    ms = 1e3
    return {
        "n": n, "doc_bytes": round(doc_bytes), "snapshot_mb": round(snapshot_mb, 1),
        "fill_s": round(fill_s, 2), "open_s": round(open_s, 2),
        "write_p50_ms": statistics.median(writes) * ms, "write_p95_ms": percentile(writes, 0.95) * ms,
        "write_p99_ms": percentile(writes, 0.99) * ms, "write_max_ms": max(writes) * ms,
        "writes": len(writes), "compactions_during_writes": compactions,
        "compact_ms": compact_s * ms, "compact_amortised_ms": compact_s * ms / writes_per_compaction,
        "get_p50_us": statistics.median(gets) * 1e6, "search_p50_ms": statistics.median(searches) * ms,
        "plain_insert_p50_ms": statistics.median(plain) * ms, "plain_samples": len(plain),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| N cases | snapshot MB | open s | write p50 / p95 / p99 ms | write max ms (compactions in run) "
            "| compaction ms "
            "(amortised per write) | get p50 µs | search all p50 ms | plain TinyDB insert p50 ms "
            "| plain ÷ ours (p50) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['snapshot_mb']} | {r['open_s']} "
            f"| {r['write_p50_ms']:.2f} / {r['write_p95_ms']:.2f} / {r['write_p99_ms']:.2f} "
            f"| {r['write_max_ms']:.1f} ({r['compactions_during_writes']}) "
            f"| {r['compact_ms']:.0f} ({r['compact_amortised_ms']:.3f}) | {r['get_p50_us']:.1f} "
            f"| {r['search_p50_ms']:.1f} | {r['plain_insert_p50_ms']:.1f} (n={r['plain_samples']}) "
            f"| {r['plain_insert_p50_ms'] / r['write_p50_ms']:.0f}× |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="1,000 cases and few samples: a smoke run")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--dir", help="where to put the files (default: a temp dir on the same disk as /tmp)")
    args = parser.parse_args(argv)
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    counts = ({"writes": 30, "gets": 200, "searches": 3, "compactions": 1, "plain": 5} if args.quick else
              {"writes": args.writes, "gets": 2000, "searches": 10, "compactions": 3, "plain": 30})
    rng = random.Random(42)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in sizes:
            print(f"… {n:,} cases", file=sys.stderr, flush=True)
            rows.append(bench_size(n, Path(tmp), counts, rng))
    print(f"TinyDBStore vs plain TinyDB — Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"~{rows[0]['doc_bytes']} B per case, {counts['writes']} write transactions per size "
          f"(fsync per commit)\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
