"""A separate OS process acting on a shared TinyDB file: claims wishes or redeems points, as fast as it can.

Usage: python tests/governance_worker.py DEFS DB MODE USERNAME ROLES UNIT CASE_ID...
Prints one JSON line: {"won": [...], "refused": [...]}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.errors import TransitionError  # noqa: E402
from engine.loader import load_definitions  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from engine.store import open_store  # noqa: E402
from engine.users import User  # noqa: E402


def main() -> None:
    defs, db, mode, username, roles, unit, *case_ids = sys.argv[1:]
    engine = Engine(load_definitions(defs), open_store(db))
    user = User(username, username, tuple(roles.split(",")), unit)
    sys.stdin.readline()  # wait for the go signal so both processes start together
    won, refused = [], []
    for cid in map(int, case_ids):
        try:
            engine.fire(cid, "claim" if mode == "claim" else "redeem", user)
            won.append(cid)
        except TransitionError:
            refused.append(cid)
    print(json.dumps({"won": won, "refused": refused}), flush=True)
    engine.store.close()


if __name__ == "__main__":
    main()
