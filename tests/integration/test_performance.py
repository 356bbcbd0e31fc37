"""Performance figures of a real QEMU guest and its server (the lab): the CPU a running TCG
guest uses, its memory, its disk counters, and the server's CPU, memory and its VMs'
traffic in one call."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.labtools import vm_named
from xencenter_lite.core.model import VmState
from xencenter_lite.core.perf import point
from xencenter_lite.engine import Engine


def test_a_running_guest_and_its_server_have_live_figures(engine: Engine, run: Any) -> None:
    vm = vm_named(engine, "web-1")
    assert vm.state is VmState.RUNNING

    async def two_readings(uuid: str | None) -> Any:
        first = await engine.counters(vm.server, uuid)
        await asyncio.sleep(1.5)
        return first, await engine.counters(vm.server, uuid)

    a, b = run(two_readings(vm.uuid))
    p = point(a, b)
    assert p is not None
    assert p.cpu_percent is not None and 0 < p.cpu_percent <= 100  # a TCG guest ticks
    assert b.cpus == vm.vcpus
    assert b.memory_total is not None and 0 < b.memory_total <= vm.memory
    assert b.disk_read is not None and b.disk_read > 0  # it booted from its disk
    assert p.disk_read_bps is not None and p.net_rx_bps == 0.0  # (the lab's guests: no NIC)

    a, b = run(two_readings(None))
    p = point(a, b)
    assert p is not None and p.cpu_percent is not None and 0 < p.cpu_percent <= 100
    assert b.memory_used is not None and b.memory_total is not None
    assert 0 < b.memory_used < b.memory_total
    # Its running VMs' disk traffic together, from one call (web-1 read its disk).
    assert b.disk_read is not None and b.disk_read >= run(engine.counters(vm.server,
                                                                          vm.uuid)).disk_read
