"""Performance figures of a VM or a server over time, from libvirt's counters.

libvirt gives cumulative counters (CPU time used, bytes read and written, bytes received and
sent) and present values (memory). A figure per second is the difference of two readings
over the time between them; a counter that went down (a VM restarted, a NIC replugged)
starts again from its new value rather than giving a negative rate. What a server cannot
report is None, and is shown as not reported, never as zero.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass


class FiguresUnavailable(Exception):
    """No figures can be read now: why, in words."""


@dataclass(frozen=True, slots=True)
class Counters:
    """One reading of a VM's or a server's counters."""

    at: float  # seconds, monotonic (when the reading was taken)
    cpu_busy_ns: int  # CPU time used: a VM's vCPUs together; a server's CPUs not idle
    cpus: int  # CPUs it has (a VM's vCPUs, a server's logical CPUs)
    # A server's CPU time in all (busy and idle), which gives its use without a clock;
    # None for a VM, whose use is CPU time over elapsed time × vCPUs.
    cpu_total_ns: int | None = None
    memory_used: int | None = None  # bytes
    memory_total: int | None = None  # bytes
    disk_read: int | None = None  # bytes since it started
    disk_write: int | None = None
    net_rx: int | None = None
    net_tx: int | None = None


@dataclass(frozen=True, slots=True)
class Point:
    """The figures between two readings, at the time of the later one."""

    at: float
    cpu_percent: float | None  # of all its CPUs (100 % = every CPU busy)
    memory_used: int | None
    memory_total: int | None
    disk_read_bps: float | None
    disk_write_bps: float | None
    net_rx_bps: float | None
    net_tx_bps: float | None


def _rate(old: int | None, new: int | None, seconds: float) -> float | None:
    if old is None or new is None or seconds <= 0:
        return None
    return max(0, new - old) / seconds


def point(prev: Counters, cur: Counters) -> Point | None:
    """The figures from `prev` to `cur`; None when no time passed between them."""
    seconds = cur.at - prev.at
    if seconds <= 0:
        return None
    busy = max(0, cur.cpu_busy_ns - prev.cpu_busy_ns)
    if cur.cpu_total_ns is not None and prev.cpu_total_ns is not None:
        total = cur.cpu_total_ns - prev.cpu_total_ns
        cpu = 100.0 * busy / total if total > 0 else None
    else:
        cpu = 100.0 * busy / (seconds * 1e9 * max(cur.cpus, 1))
    return Point(
        at=cur.at,
        cpu_percent=None if cpu is None else min(100.0, cpu),
        memory_used=cur.memory_used, memory_total=cur.memory_total,
        disk_read_bps=_rate(prev.disk_read, cur.disk_read, seconds),
        disk_write_bps=_rate(prev.disk_write, cur.disk_write, seconds),
        net_rx_bps=_rate(prev.net_rx, cur.net_rx, seconds),
        net_tx_bps=_rate(prev.net_tx, cur.net_tx, seconds),
    )


class History:
    """The latest figures of one VM or server, oldest first (at most `keep` of them)."""

    def __init__(self, keep: int = 300) -> None:
        self.points: deque[Point] = deque(maxlen=keep)
        self._last: Counters | None = None

    def add(self, counters: Counters) -> Point | None:
        """Take a reading; the new point when there was one before it."""
        prev, self._last = self._last, counters
        if prev is None:
            return None
        p = point(prev, counters)
        if p is not None:
            self.points.append(p)
        return p

    def __iter__(self) -> Iterator[Point]:
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def latest(self) -> Point | None:
        return self.points[-1] if self.points else None
