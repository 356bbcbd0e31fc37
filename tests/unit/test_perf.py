"""Performance figures from libvirt's counters (core.perf)."""

from __future__ import annotations

from xencenter_lite.core.domxml import io_targets
from xencenter_lite.core.perf import Counters, History, point

GIB = 1024**3


def vm(at: float, cpu_ns: int, rd: int = 0, rx: int = 0) -> Counters:
    return Counters(at=at, cpu_busy_ns=cpu_ns, cpus=2, memory_used=GIB, memory_total=2 * GIB,
                    disk_read=rd, disk_write=0, net_rx=rx, net_tx=0)


def test_a_vms_cpu_is_its_cpu_time_over_the_time_of_all_its_vcpus() -> None:
    # 1 s of CPU time in 2 s on 2 vCPUs: a quarter of what it could use.
    p = point(vm(10.0, 0), vm(12.0, 1_000_000_000, rd=4 * 1024**2, rx=1024))
    assert p is not None
    assert p.cpu_percent == 25.0
    assert p.disk_read_bps == 2 * 1024**2 and p.net_rx_bps == 512
    assert (p.memory_used, p.memory_total, p.at) == (GIB, 2 * GIB, 12.0)


def test_a_servers_cpu_is_the_busy_share_of_all_its_cpu_time() -> None:
    a = Counters(at=0.0, cpu_busy_ns=100, cpus=4, cpu_total_ns=1_000)
    b = Counters(at=1.0, cpu_busy_ns=400, cpus=4, cpu_total_ns=2_000)
    p = point(a, b)
    assert p is not None and p.cpu_percent == 30.0
    # What a server cannot report stays unknown, never zero.
    assert p.disk_read_bps is None and p.net_tx_bps is None and p.memory_used is None


def test_a_counter_that_went_down_gives_no_negative_rate() -> None:
    p = point(vm(0.0, 5_000_000_000, rd=10_000), vm(1.0, 1_000, rd=500))  # restarted
    assert p is not None
    assert p.cpu_percent == 0.0 and p.disk_read_bps == 0.0


def test_no_time_between_two_readings_gives_no_point() -> None:
    assert point(vm(3.0, 0), vm(3.0, 10)) is None


def test_a_history_keeps_the_latest_figures_from_the_second_reading_on() -> None:
    h = History(keep=3)
    assert h.add(vm(0.0, 0)) is None and len(h) == 0 and h.latest is None
    for i in range(1, 6):
        h.add(vm(float(i), i * 500_000_000))
    assert len(h) == 3
    assert [p.at for p in h] == [3.0, 4.0, 5.0]
    assert h.latest is not None and h.latest.cpu_percent == 25.0


def test_io_targets_are_the_disks_and_the_nics_host_devices() -> None:
    xml = """<domain><devices>
      <disk type='file' device='disk'><source file='/a.qcow2'/><target dev='vda'/></disk>
      <disk type='file' device='cdrom'><target dev='sda'/></disk>
      <interface type='network'><source network='default'/><target dev='vnet3'/></interface>
      <interface type='network'><source network='default'/></interface>
    </devices></domain>"""
    assert io_targets(xml) == (("vda",), ("vnet3",))
