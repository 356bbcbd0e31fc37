"""Performance figures through the engine, on libvirt's test driver: a running VM's and a
server's counters, refusals in words for a halted VM and a server that is not connected, and
the Performance tab drawing them (offscreen)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import until
from tests.testdriver import driver_domain
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.perf import FiguresUnavailable, History
from xencenter_lite.engine import Engine
from xencenter_lite.ui.performance import PerformanceTab


@pytest.fixture
def engine(tmp_path: Path, run: Any) -> Iterator[tuple[Engine, str, str]]:
    """An engine on one test-driver server; a running and a halted VM's UUIDs."""
    with driver_domain("perf") as (tag, running), driver_domain("perf-off", start=False) as (
            _tag, halted):
        inventory = tmp_path / "inventory.toml"
        inventory.write_text(f'[[servers]]\nname = "td"\nuri = "test:///default?tag={tag}"\n'
                             '[[servers]]\nname = "gone"\nuri = "test:///nonexistent.xml"\n')
        eng = Engine(load_inventory(inventory), state_dir=tmp_path / "state")
        run(eng.start(watch=False))
        try:
            yield eng, running, halted
        finally:
            run(eng.close())


def test_a_running_vm_and_its_server_give_their_counters(
        engine: tuple[Engine, str, str], run: Any) -> None:
    eng, running, _halted = engine
    vm = run(eng.counters("td", running))
    assert vm.cpus == 1 and vm.cpu_busy_ns > 0 and vm.cpu_total_ns is None
    assert vm.memory_total is not None and vm.memory_total > 0
    server = run(eng.counters("td"))
    assert server.cpu_total_ns is not None and server.cpu_total_ns > server.cpu_busy_ns > 0
    assert server.memory_total is not None and server.memory_total > 0
    assert server.cpus > 0
    h = History()
    h.add(vm)
    p = h.add(run(eng.counters("td", running)))
    assert p is not None and p.cpu_percent is not None and 0 <= p.cpu_percent <= 100


def test_no_figures_of_a_halted_vm_or_a_server_not_connected(
        engine: tuple[Engine, str, str], run: Any) -> None:
    eng, _running, halted = engine
    with pytest.raises(FiguresUnavailable, match="not running"):
        run(eng.counters("td", halted))
    with pytest.raises(FiguresUnavailable, match="'gone' is not connected"):
        run(eng.counters("gone"))


def test_the_performance_tab_reads_while_on_show_and_draws_the_figures(
        engine: tuple[Engine, str, str], run: Any, qtbot: Any) -> None:
    eng, running, halted = engine
    snap = eng.snapshot()
    vm = snap.vm(("td", running))
    off = snap.vm(("td", halted))
    assert vm is not None and off is not None
    tab = PerformanceTab(eng)
    qtbot.addWidget(tab)
    key = ("vm", "td", running)
    tab.show_object(vm)
    assert tab.histories == {}  # not on show: nothing read
    tab.show()
    run(until(lambda: key in tab.histories, 10))  # the first reading
    tab.read_now()
    run(until(lambda: len(tab.histories[key]) >= 1, 10))  # the second: figures
    assert "CPU: " in tab.cpu.accessibleDescription()
    assert tab.cpu.latest("CPU") is not None
    assert (tab.memory.latest("Total") or 0) > 0
    assert "read every 2 s" in tab.status.text()
    # A halted VM: said, and nothing read for it.
    tab.show_object(off)
    assert f"'{off.name}' is halted" in tab.status.text()
    tab.read_now()
    run(asyncio.sleep(0.3))
    assert ("vm", "td", halted) not in tab.histories
    assert tab.cpu.summary() == "No figures yet"
    # Back to the running VM: what was seen before is there again.
    tab.show_object(vm)
    assert tab.cpu.latest("CPU") is not None
    tab.hide()
    assert not tab.timer.isActive()
