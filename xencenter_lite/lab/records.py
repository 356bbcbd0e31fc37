"""Read back what the lab's Linux guest wrote, to prove a moved guest lost nothing.

The guest (see guestimage.INIT_SCRIPT) writes 512-byte records "XCLREC <seq> <crc32> <payload>"
(space-padded, newline-terminated; crc32 in hex over the payload) into a ring of slots that
starts 8 MiB into its last disk, record `seq` in slot `seq % slots`, and fsyncs each one. Every
~0.5 s it prints "XCL seq=<last fsynced seq> t=<its uptime>" on its serial console, and every
5 s "XCL dirty mib_s=<MiB of memory it rewrote per second>". Pure Python apart from
qemu-img, which reads qcow2 images (-U: safe while the VM runs); no libvirt.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

RECORD_SIZE = 512
START = 8 * 1024 * 1024  # the first 4 MiB of every disk hold the lab's 0x5a pattern
REGION_MAX = 16 * 1024 * 1024  # at most 32768 slots: a ring the guest scans quickly at boot
MAGIC = b"XCLREC "
_REPORT = re.compile(rb"XCL seq=(\d+)")
_DIRTY = re.compile(r"XCL dirty mib_s=(\d+(?:\.\d+)?)")


def dirty_rates(console: str) -> list[float]:
    """The dirty rates (MiB/s) the guest reported on its console, oldest first."""
    return [float(m) for m in _DIRTY.findall(console)]


def slots_for(disk_bytes: int) -> int:
    """How many record slots a disk of `disk_bytes` holds (the guest gets it on its cmdline)."""
    return max(0, min(REGION_MAX, disk_bytes - START)) // RECORD_SIZE


@dataclass(frozen=True)
class Records:
    """What a disk holds: every valid sequence number and what was wrong with the rest."""

    seqs: tuple[int, ...] = ()  # sorted; a number found twice appears twice
    corrupt: int = 0  # slots starting with the magic whose checksum, form or slot is wrong
    corrupt_slots: tuple[int, ...] = field(default=(), repr=False)

    @property
    def count(self) -> int:
        return len(self.seqs)

    @property
    def first(self) -> int | None:
        return self.seqs[0] if self.seqs else None

    @property
    def last(self) -> int | None:
        return self.seqs[-1] if self.seqs else None

    @property
    def repeats(self) -> list[int]:
        return sorted(s for s, n in Counter(self.seqs).items() if n > 1)

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """Missing runs (first, last) between the first and the last record."""
        found = sorted(set(self.seqs))
        return [(a + 1, b - 1) for a, b in pairwise(found) if b > a + 1]

    @property
    def intact(self) -> bool:
        return self.count > 0 and not (self.gaps or self.repeats or self.corrupt)

    def summary(self) -> str:
        return (f"{self.count} records {self.first}..{self.last}, gaps {self.gaps[:5]}, "
                f"repeats {self.repeats[:5]}, corrupt {self.corrupt}")


def parse_record(raw: bytes) -> int | None:
    """The sequence number of one valid 512-byte record, else None."""
    if len(raw) != RECORD_SIZE or not raw.endswith(b"\n"):
        return None
    parts = raw[:-1].rstrip(b" ").split(b" ", 3)
    if len(parts) != 4 or parts[0] != MAGIC.strip() or not parts[1].isdigit():
        return None
    try:
        crc = int(parts[2], 16)
    except ValueError:
        return None
    if len(parts[2]) != 8 or zlib.crc32(parts[3]) != crc:
        return None
    return int(parts[1])


def parse_region(region: bytes, slots: int | None = None) -> Records:
    """Records in a region of slots; with `slots`, a record must sit in slot seq % slots."""
    seqs: list[int] = []
    bad: list[int] = []
    for slot in range(len(region) // RECORD_SIZE):
        raw = region[slot * RECORD_SIZE:(slot + 1) * RECORD_SIZE]
        if not raw.startswith(MAGIC):
            continue
        seq = parse_record(raw)
        if seq is None or (slots and seq % slots != slot):
            bad.append(slot)
        else:
            seqs.append(seq)
    return Records(tuple(sorted(seqs)), len(bad), tuple(bad))


def read_records(path: str | Path, fmt: str = "qcow2") -> Records:
    """The records on a disk image (raw or qcow2), read safely while a VM uses it."""
    path = Path(path)
    if fmt == "raw":
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(START)
            region = f.read(slots_for(size) * RECORD_SIZE)
        return parse_region(region, slots_for(size))
    info = subprocess.run(["qemu-img", "info", "-U", "--output=json", "-f", fmt, str(path)],
                          check=True, capture_output=True, text=True)
    slots = slots_for(int(json.loads(info.stdout)["virtual-size"]))
    with tempfile.TemporaryDirectory(prefix="xcl-records-") as tmp:
        out = Path(tmp) / "region.raw"
        subprocess.run(["qemu-img", "dd", "-U", "-f", fmt, "-O", "raw", f"bs={RECORD_SIZE}",
                        f"skip={START // RECORD_SIZE}", f"count={slots}", f"if={path}",
                        f"of={out}"], check=True, capture_output=True)
        return parse_region(out.read_bytes(), slots)


# ---- the serial console ----------------------------------------------------------------------


def serial_log(state_dir: str | Path, server: str, guest: str) -> Path:
    """The guest's serial log as `server` writes it (its /var/log/libvirt/qemu in the lab).

    Each server writes its own file: after a migration the destination's file goes on."""
    return Path(state_dir) / "hosts" / server / "log" / "qemu" / f"{guest}-serial.log"


def last_reported(text: bytes) -> int | None:
    """The last "XCL seq=N" in serial console output."""
    found = _REPORT.findall(text)
    return int(found[-1]) if found else None


def reported_seq(paths: Iterable[str | Path], tail: int = 64 * 1024) -> int | None:
    """The highest sequence number any of these serial logs reports (missing files: none).

    Sequence numbers only grow, so over the logs of every server a guest ran on, the
    highest is the latest."""
    best: int | None = None
    for path in paths:
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - tail))
                seq = last_reported(f.read())
        except OSError:
            continue
        if seq is not None and (best is None or seq > best):
            best = seq
    return best
