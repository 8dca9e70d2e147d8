"""bench/instance.py builds instances the app opens, with cases of every workflow in many states."""
from __future__ import annotations

import collections

from bench import instance
from engine.loader import load_definitions
from engine.store import TinyDBStore
from engine.web import create_app


def test_instance_has_cases_over_workflows_and_states_and_the_app_serves_it(tmp_path, monkeypatch):
    monkeypatch.setattr(instance, "INSTANCES", tmp_path)
    definitions = load_definitions(instance.ROOT)
    directory = instance.build(1500)
    assert instance.build(1500) == directory  # the second call reuses the cache
    store = TinyDBStore(directory / "civicflow.json")
    try:
        cases = store.search("cases")
        users = {d["username"] for d in store.search("users")}
    finally:
        store.close()
    assert [d["id"] for d in cases] == list(range(1, 1501))
    states = collections.Counter((d["workflow"], d["state"]) for d in cases)
    assert {wf for wf, _ in states} == set(definitions.workflows)
    assert len(states) >= 0.8 * sum(len(wf.states) for wf in definitions.workflows.values())
    assert {"staff", "secretary", "resident"} <= users

    # copies beyond the pool: dates moved back, the org unit at the level it was, links kept inside the copy
    size = len(instance.pool_tables(instance.source_hash())["cases"])  # cached by build()
    pool = {d["id"]: d for d in cases if d["id"] <= size}
    org = definitions.org
    copies = [d for d in cases if d["id"] > size]
    assert copies
    for doc in copies:
        original = pool[doc["id"] - size]
        assert doc["workflow"] == original["workflow"] and doc["state"] == original["state"]
        assert org.units[doc["org_unit"]].level == org.units[original["org_unit"]].level
        assert doc["created_at"][:19] <= original["created_at"][:19]
        if original["parent"]:
            assert doc["parent"] in (original["parent"] + size, original["parent"])
    assert any(d["created_at"][:7] != pool[d["id"] - size]["created_at"][:7] for d in copies)
    assert len({d["org_unit"] for d in copies}) > len({d["org_unit"] for d in pool.values()}) // 2

    monkeypatch.setenv("CIVICFLOW_INSTANCE", str(directory))
    app = create_app({"TICK_SECONDS": 0})
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/login", data={"csrf_token": token, "username": "staff", "password": instance.PASSWORD}).status_code == 302
    assert client.get("/workflows/service_order").status_code == 200
