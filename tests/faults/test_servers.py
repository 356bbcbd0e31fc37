"""Server ▸ Connect, Disconnect, Reconnect and Remove from Inventory, on libvirt's test driver.

The real engine and the real link run against two servers on `test:///default` (a pool of
two): a server the operator disconnects stays disconnected (no retry) until they connect it;
neither Disconnect nor Remove goes through while a job uses the server (FaultLink makes the
job's call slow, nothing else); and a removed server leaves the inventory file, the engine
and its pool, with the rest of the file as it was written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.faultlink import DROP, Call, FaultPlan, fault_links
from tests.testdriver import driver_domain
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.power import PowerAction
from xencenter_lite.engine import Engine
from xencenter_lite.engine.fleet import DISCONNECTED
from xencenter_lite.ui.add_server import remove_from_inventory


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An inventory of td-a and td-b in pool "Test" and td-c on its own, and a running VM's
    UUID."""
    with driver_domain("srv") as (tag, uuid):
        yield _inventory(tmp_path, tag), uuid


def _inventory(tmp_path: Path, tag: str) -> Path:
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f"""# the operator's own notes stay
[[servers]]
name = "td-a"
uri = "test:///default?server=a&tag={tag}"

[[servers]]
name = "td-b"  # the second one
uri = "test:///default?server=b&tag={tag}"
[servers.networks]
storage = "192.0.2.2"

[[pools]]
name = "Test"
members = ["td-a", "td-b"]

[[servers]]
name = "td-c"
uri = "test:///default?server=c&tag={tag}"
""")
    return inventory


def test_a_disconnected_server_stays_so_until_it_is_connected(
        two_servers: tuple[Path, str], run: Any, tmp_path: Path) -> None:
    inventory, _ = two_servers
    engine = Engine(load_inventory(inventory), state_dir=tmp_path / "state")

    async def scenario() -> list[tuple[bool, bool, str | None]]:
        await engine.start()  # watching: a lost server would be retried after 1 s
        seen = []
        try:
            srv = engine.snapshot().servers["td-b"]
            seen.append((srv.connected, srv.held, srv.error))
            await engine.disconnect("td-b")
            srv = engine.snapshot().servers["td-b"]
            seen.append((srv.connected, srv.held, srv.error))
            await asyncio.sleep(2.5)  # past two retry delays
            srv = engine.snapshot().servers["td-b"]
            seen.append((srv.connected, srv.held, srv.error))
            assert engine.snapshot().servers["td-a"].connected  # the other one untouched
            await engine.reconnect("td-b")
            srv = engine.snapshot().servers["td-b"]
            seen.append((srv.connected, srv.held, srv.error))
        finally:
            await engine.close()
        return seen

    assert run(scenario(), 30) == [
        (True, False, None),
        (False, True, DISCONNECTED),
        (False, True, DISCONNECTED),
        (True, False, None),
    ]


def test_disconnect_and_remove_are_refused_while_a_job_uses_the_server(
        two_servers: tuple[Path, str], run: Any, tmp_path: Path) -> None:
    inventory, uuid = two_servers
    plan = FaultPlan(slow={"power": 1.5})
    engine = Engine(load_inventory(inventory), state_dir=tmp_path / "state",
                    link_factory=fault_links(plan))

    async def scenario() -> None:
        await engine.start(watch=False)
        try:
            plan.arm()
            job = engine.power(("td-a", uuid), PowerAction.SUSPEND)
            await asyncio.sleep(0.3)
            assert not job.state.finished
            for refused in (engine.server_in_use("td-a"), engine.removal_refused("td-a")):
                assert refused is not None and "1 job(s) use it" in refused, refused
                assert job.title in refused
            with pytest.raises(ValueError, match="cannot be disconnected: 1 job"):
                await engine.disconnect("td-a")
            with pytest.raises(ValueError, match="cannot be removed: 1 job"):
                await engine.remove_server("td-a")
            assert engine.snapshot().servers["td-a"].connected
            assert engine.server_in_use("td-b") is None  # not the job's server
            await engine.wait([job])
            assert job.state is JobState.DONE, job.error
            assert engine.server_in_use("td-a") is None
            await engine.disconnect("td-a")
            assert not engine.snapshot().servers["td-a"].connected
        finally:
            plan.disarm()
            await engine.close()

    run(scenario(), 30)


def test_a_removed_server_leaves_the_file_the_engine_and_its_pool(
        two_servers: tuple[Path, str], run: Any, tmp_path: Path) -> None:
    inventory, uuid = two_servers
    engine = Engine(load_inventory(inventory), state_dir=tmp_path / "state")

    async def scenario() -> None:
        await engine.start()
        try:
            assert engine.snapshot().vm(("td-b", uuid)) is not None
            remove_from_inventory(inventory, "td-b")
            await engine.remove_server("td-b")
            snap = engine.snapshot()
            assert set(snap.servers) == {"td-a", "td-c"}
            assert snap.vm(("td-b", uuid)) is None
            assert snap.pools["Test"].members == ("td-a",)
            assert [s.name for s in engine.inventory.servers] == ["td-a", "td-c"]
            # The pool's last member: the pool goes with it.
            remove_from_inventory(inventory, "td-a")
            await engine.remove_server("td-a")
            assert set(engine.snapshot().servers) == {"td-c"}
            assert engine.snapshot().pools == {}
            # The inventory's last server stays: an inventory lists at least one.
            refused = engine.removal_refused("td-c")
            assert refused is not None and "only server" in refused
            with pytest.raises(ValueError, match="only server"):
                await engine.remove_server("td-c")
            assert engine.snapshot().servers["td-c"].connected
        finally:
            await engine.close()

    run(scenario(), 30)
    text = inventory.read_text()
    assert "# the operator's own notes stay" in text
    assert "td-a" not in text and "td-b" not in text and "192.0.2.2" not in text
    assert "[[pools]]" not in text
    assert [s.name for s in load_inventory(inventory).servers] == ["td-c"]


def test_a_server_lost_and_back_are_events_once_each(
        two_servers: tuple[Path, str], run: Any, tmp_path: Path) -> None:
    """Events shows a server that cannot be reached, one that is lost and one that answers
    again, once each: not at every retry."""
    inventory, _ = two_servers
    plan = FaultPlan(roles={"td-b": "b"}, failing=frozenset({"open"}))
    engine = Engine(load_inventory(inventory), state_dir=tmp_path / "state",
                    link_factory=fault_links(plan))
    seen: list[tuple[str, str, str]] = []
    engine.subscribe_server_events(lambda e: seen.append((e.title, e.state.value, e.status)))

    async def scenario() -> None:
        plan.arm()  # no server can be opened
        await engine.start()
        try:
            await asyncio.sleep(3.5)  # retries at 1 s and 2 s fail too: no more news
            plan.disarm()
            await engine.reconnect("td-b")
            assert engine.snapshot().servers["td-b"].connected
            # td-a comes back on its own retry.
            for _ in range(100):
                if engine.snapshot().servers["td-a"].connected:
                    break
                await asyncio.sleep(0.1)
            plan.arm(Call("b", "read", 1), DROP)  # td-b's next reading loses the connection
            engine.request_refresh("td-b")
            for _ in range(100):
                if not engine.snapshot().servers["td-b"].connected:
                    break
                await asyncio.sleep(0.05)
            plan.disarm()
            await engine.reconnect("td-b")
        finally:
            await engine.close()

    run(scenario(), 60)
    b = [s for s in seen if "'td-b'" in s[0]]
    assert b == [("Cannot connect to 'td-b'", "failed", "not connected"),
                 ("Connected to 'td-b' again", "done", "connected"),
                 ("Lost the connection to 'td-b'", "failed", "not connected"),
                 ("Connected to 'td-b' again", "done", "connected")], seen
    assert [s[0] for s in seen if "'td-a'" in s[0]] == ["Cannot connect to 'td-a'",
                                                         "Connected to 'td-a' again"]
    assert [e.title for e in engine.server_events] == [s[0] for s in seen]
    lost = next(e for e in engine.server_events if e.title.startswith("Lost"))
    assert lost.error is not None and "Server ▸ Connect" in lost.error


def test_a_default_sr_set_from_the_console_is_the_engines_at_once(
        two_servers: tuple[Path, str], run: Any, tmp_path: Path) -> None:
    inventory, _ = two_servers
    engine = Engine(load_inventory(inventory), state_dir=tmp_path / "state")
    try:
        run(engine.start(watch=False))
        engine.set_default_sr("pool", "Test", "default-pool")
        engine.set_default_sr("server", "td-c", "default-pool")
        snap = engine.snapshot()
        assert snap.pools["Test"].default_sr == "default-pool"
        assert snap.servers["td-c"].default_sr == "default-pool"
        assert engine.inventory.server("td-c").default_sr == "default-pool"  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="no pool named 'Nope'"):
            engine.set_default_sr("pool", "Nope", "default-pool")
    finally:
        run(engine.close())
