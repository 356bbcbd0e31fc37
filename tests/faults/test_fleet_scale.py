"""A fleet of many servers, on libvirt's test driver: connections opened concurrently but
bounded, each server shown as soon as it answers, the slow poll spread over its cycle, the
console's checks made on current readings, and a costly redraw not repeated at every change.

Each server is a node file of its own (`test:///path`: its own host, one VM). The link is
the real one; the tests only wrap it to note when its calls begin and end, and to make a
connection take the time a remote server's round trips would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from xencenter_lite.core.inventory import ServerConfig, load_inventory
from xencenter_lite.core.model import Snapshot
from xencenter_lite.core.plan import MigrationRequest
from xencenter_lite.engine import Engine, fleet
from xencenter_lite.virt import LibvirtLink, ServerLink


def _fleet(folder: Path, servers: int) -> Path:
    inv = []
    for s in range(servers):
        node = folder / f"node-{s}.xml"
        node.write_text(
            "<node><cpu><mhz>2600</mhz><model>x86_64</model><active>4</active><nodes>1</nodes>"
            "<sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>"
            "<memory>16777216</memory>"
            f"<domain type='test'><name>vm-{s}</name><memory>1024</memory><vcpu>1</vcpu>"
            "<os><type>hvm</type></os></domain></node>\n")
        inv += ["[[servers]]", f'name = "srv-{s}"', f'uri = "test://{node}"', ""]
    inventory = folder / "inventory.toml"
    inventory.write_text("\n".join(inv))
    return inventory


class Calls:
    """When each link call began and ended: (server, method, began, ended)."""

    def __init__(self, open_delay: Callable[[str], float] = lambda _name: 0.0) -> None:
        self.open_delay = open_delay
        self.log: list[tuple[str, str, float, float]] = []
        self.lock = threading.Lock()
        self.opening = 0
        self.most_opening = 0

    def factory(self, config: ServerConfig) -> ServerLink:
        calls = self

        class Noted(LibvirtLink):
            def open(self) -> Any:
                with calls.lock:
                    calls.opening += 1
                    calls.most_opening = max(calls.most_opening, calls.opening)
                began = time.monotonic()
                try:
                    time.sleep(calls.open_delay(self.name))  # the network, as it were
                    return super().open()
                finally:
                    with calls.lock:
                        calls.opening -= 1
                    calls.note(self.name, "open", began)

            def read(self, refresh_pools: bool = True) -> Any:
                began = time.monotonic()
                try:
                    return super().read(refresh_pools)
                finally:
                    calls.note(self.name, "read", began)

        return Noted(config.name, config.uri)

    def note(self, server: str, method: str, began: float) -> None:
        with self.lock:
            self.log.append((server, method, began, time.monotonic()))

    def reads(self, since: float = 0.0) -> list[tuple[str, float]]:
        with self.lock:
            return [(s, b) for s, m, b, _e in self.log if m == "read" and b >= since]


def test_connections_open_together_within_the_bound_and_each_server_shows_as_it_answers(
        tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet, "CONNECT_LIMIT", 4)
    monkeypatch.setattr(fleet, "CONNECT_RAMP", 4)
    inventory = _fleet(tmp_path, 12)
    # srv-0 answers after 0.1 s, the others after 0.4 s each: 12 one after another would
    # take 4.5 s; 4 at a time, three rounds of about 0.4 s.
    calls = Calls(lambda name: 0.1 if name == "srv-0" else 0.4)
    engine = Engine(load_inventory(inventory), link_factory=calls.factory,
                    state_dir=tmp_path / "state")
    seen: list[int] = []
    engine.subscribe(lambda snap: seen.append(sum(s.connected for s in snap.servers.values())))
    began = time.monotonic()
    try:
        run(engine.start(watch=False))
        took = time.monotonic() - began
        assert all(s.connected for s in engine.snapshot().servers.values())
        assert calls.most_opening == 4  # concurrent, and never more than the bound
        assert took < 3.0, took
        # The first server was shown before the last ones had answered.
        assert seen[0] >= 1 and any(0 < n < 12 for n in seen), seen
        assert seen[-1] == 12
    finally:
        run(engine.close())


def test_the_slow_poll_reads_the_servers_one_after_another_over_its_cycle(
        tmp_path: Path, run: Any) -> None:
    inventory = _fleet(tmp_path, 4)
    calls = Calls()
    engine = Engine(load_inventory(inventory), link_factory=calls.factory, poll_interval=0.8,
                    state_dir=tmp_path / "state")

    async def scenario() -> list[tuple[str, float]]:
        await engine.start()
        t0 = time.monotonic()
        await asyncio.sleep(2.5)
        return calls.reads(since=t0)

    try:
        reads = run(scenario())
    finally:
        run(engine.close())
    per_server = {s: [b for n, b in reads if n == s] for s in engine.snapshot().servers}
    # Each server is read about once per poll interval (0.8 s): 2 or 3 times in 2.5 s...
    assert all(2 <= len(times) <= 4 for times in per_server.values()), per_server
    # ...and not all at the same moment: the first reading of each is spread over the cycle
    # (0.2 s apart nominally; all four began within a few milliseconds before).
    firsts = sorted(times[0] for times in per_server.values())
    assert firsts[-1] - firsts[0] >= 0.3, firsts


def test_the_consoles_checks_use_the_readings_the_engine_keeps(
        tmp_path: Path, run: Any) -> None:
    inventory = _fleet(tmp_path, 6)
    calls = Calls()
    watching = Engine(load_inventory(inventory), link_factory=calls.factory,
                      poll_interval=3600, state_dir=tmp_path / "state")

    async def menu_checks(engine: Engine) -> set[str]:
        """A Migrate to Server menu for vm-0: one check per other server; the servers read
        meanwhile."""
        vm = next(v for v in engine.snapshot().vms if v.name == "vm-0")
        t0 = time.monotonic()
        results = await asyncio.gather(*(
            engine.precheck([MigrationRequest(vm.key, f"srv-{s}")]) for s in range(1, 6)))
        assert all(plans for plans, _problems in results)
        return {server for server, _began in calls.reads(since=t0)}

    try:
        run(watching.start())
        assert run(menu_checks(watching)) == set()  # events and the poll keep them current
        watching.request_refresh("srv-3")  # as an event from srv-3 does
        assert run(menu_checks(watching)) == {"srv-3"}
    finally:
        run(watching.close())

    # Without the poll (the CLI, a script), a reading over a second old is read again.
    once = Engine(load_inventory(inventory), link_factory=calls.factory,
                  state_dir=tmp_path / "state2")
    try:
        run(once.start(watch=False))
        run(asyncio.sleep(1.1))
        # vm-0's server and the five destinations
        assert run(menu_checks(once)) == {f"srv-{s}" for s in range(6)}
    finally:
        run(once.close())


def test_a_costly_redraw_is_not_repeated_at_every_change(tmp_path: Path, run: Any) -> None:
    inventory = _fleet(tmp_path, 2)
    engine = Engine(load_inventory(inventory), state_dir=tmp_path / "state")
    told: list[Snapshot] = []

    def slow_listener(snap: Snapshot) -> None:
        told.append(snap)
        time.sleep(0.03)  # a tree of 20,000 VMs redrawn, say

    async def scenario() -> None:
        await engine.start(watch=False)
        engine.subscribe(slow_listener)
        for _ in range(20):  # twenty readings coming in one after another
            engine.fleet.changed()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.5)

    try:
        run(scenario())
    finally:
        run(engine.close())
    assert 2 <= len(told) <= 8, len(told)  # folded together, about 4 × 30 ms apart
    assert told[-1] is engine.snapshot()  # and the last change was told


def test_the_bound_is_reached_in_steps_so_the_first_servers_answer_first(
        tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet, "CONNECT_LIMIT", 6)
    monkeypatch.setattr(fleet, "CONNECT_RAMP", 2)
    monkeypatch.setattr(fleet, "CONNECT_RAMP_EVERY", 0.3)
    inventory = _fleet(tmp_path, 8)
    calls = Calls(lambda _name: 1.0)
    engine = Engine(load_inventory(inventory), link_factory=calls.factory,
                    state_dir=tmp_path / "state")
    try:
        run(engine.start(watch=False))
    finally:
        run(engine.close())
    opens = sorted(e - 1.0 for _s, m, _b, e in calls.log if m == "open")  # when each began
    assert calls.most_opening == 6
    # Two began at once, two more 0.3 s later, two more 0.3 s after them; the last two
    # when the first had answered (1 s).
    assert opens[1] - opens[0] < 0.1 and opens[2] - opens[0] >= 0.25, opens
    assert opens[4] - opens[0] >= 0.5 and opens[6] - opens[0] >= 0.9, opens
