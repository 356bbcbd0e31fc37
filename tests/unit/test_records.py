"""Reading back the Linux guest's records and progress reports (no root, no libvirt)."""

from __future__ import annotations

import zlib
from pathlib import Path

from xencenter_lite.lab import records
from xencenter_lite.lab.records import (
    RECORD_SIZE,
    START,
    dirty_rates,
    last_reported,
    parse_record,
    parse_region,
    read_records,
    reported_seq,
    serial_log,
    slots_for,
)

MIB = 1024 * 1024


def record(seq: int, payload: str = "web-1 t=12.34") -> bytes:
    """A record as the guest's /init writes it: printf '%-511s\\n' "XCLREC seq crc payload"."""
    crc = f"{zlib.crc32(payload.encode()):08x}"
    return f"{f'XCLREC {seq} {crc} {payload}':<511}\n".encode()


def region(slots: int, seqs: list[int]) -> bytearray:
    data = bytearray(slots * RECORD_SIZE)
    for seq in seqs:
        slot = seq % slots
        data[slot * RECORD_SIZE:(slot + 1) * RECORD_SIZE] = record(seq)
    return data


def test_a_record_is_512_bytes_and_parses() -> None:
    assert len(record(7)) == RECORD_SIZE
    assert parse_record(record(7)) == 7
    assert parse_record(record(0, "x")) == 0


def test_a_damaged_record_is_refused() -> None:
    good = record(42)
    assert parse_record(good.replace(b"t=12.34", b"t=12.35")) is None  # payload changed
    assert parse_record(good[:-1] + b" ") is None  # no newline at the end
    assert parse_record(good[:100]) is None  # torn
    assert parse_record(b"XCLREC x " + good[9:]) is None
    assert parse_record(b"\0" * RECORD_SIZE) is None


def test_the_sequence_number_is_not_covered_by_the_checksum_but_by_the_slot() -> None:
    # The guest checks the payload's crc; a record that claims another number sits in the
    # wrong slot, and the region parser counts it as corrupt.
    data = region(16, [0, 1, 2])
    data[RECORD_SIZE:2 * RECORD_SIZE] = record(5)  # slot 1 holds a record numbered 5
    found = parse_region(bytes(data), slots=16)
    assert found.seqs == (0, 2) and found.corrupt == 1 and found.corrupt_slots == (1,)
    assert found.gaps == [(1, 1)]


def test_an_intact_run() -> None:
    found = parse_region(bytes(region(64, list(range(40)))), slots=64)
    assert (found.count, found.first, found.last) == (40, 0, 39)
    assert found.gaps == [] and found.repeats == [] and found.corrupt == 0
    assert found.intact
    assert "40 records 0..39" in found.summary()


def test_the_ring_wraps_and_keeps_the_newest_records() -> None:
    found = parse_region(bytes(region(64, list(range(150)))), slots=64)
    assert (found.count, found.first, found.last) == (64, 86, 149)
    assert found.intact


def test_gaps_and_repeats_are_reported() -> None:
    seqs = [s for s in range(30) if s not in (5, 6, 20)]
    found = parse_region(bytes(region(64, seqs)), slots=64)
    assert found.gaps == [(5, 6), (20, 20)]
    assert not found.intact
    # Without a slot check a record found twice is a repeat.
    twice = bytes(region(64, [0, 1, 2])) + record(2)
    loose = parse_region(twice)
    assert loose.repeats == [2] and not loose.intact


def test_an_empty_region_is_not_intact() -> None:
    found = parse_region(bytes(4 * RECORD_SIZE), slots=4)
    assert found.count == 0 and found.first is None and found.last is None
    assert not found.intact


def test_slots_for_a_disk() -> None:
    assert slots_for(4 * MIB) == 0
    assert slots_for(9 * MIB) == MIB // RECORD_SIZE
    assert slots_for(64 * MIB) == records.REGION_MAX // RECORD_SIZE
    assert slots_for(256 * MIB) == 32768


def test_read_records_from_a_raw_image(tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    slots = slots_for(10 * MIB)
    with open(disk, "wb") as f:
        f.write(b"\x5a" * 4 * MIB)
        f.seek(START)
        f.write(bytes(region(slots, list(range(3000, 3100)))))
        f.truncate(10 * MIB)
    found = read_records(disk, "raw")
    assert (found.first, found.last, found.count) == (3000, 3099, 100)
    assert found.intact


def test_last_reported_sequence_in_serial_output() -> None:
    text = b"\x1b[2J noise\r\nXCL start dev=/dev/vda next=0\nXCL seq=8\r\nXCL seq=19\nXCL se"
    assert last_reported(text) == 19
    assert last_reported(b"SeaBIOS\n") is None


def test_reported_seq_takes_the_highest_over_every_servers_log(tmp_path: Path) -> None:
    old = serial_log(tmp_path, "lab-a1", "web-1")
    new = serial_log(tmp_path, "lab-a2", "web-1")
    assert old == tmp_path / "hosts/lab-a1/log/qemu/web-1-serial.log"
    old.parent.mkdir(parents=True)
    new.parent.mkdir(parents=True)
    old.write_bytes(b"XCL seq=10\nXCL seq=120\n")
    new.write_bytes(b"XCL seq=121\nXCL seq=130\n")
    missing = serial_log(tmp_path, "lab-b1", "web-1")
    assert reported_seq([old, new, missing]) == 130
    assert reported_seq([missing]) is None
    big = b"XCL seq=1\n" + b"." * 200_000 + b"\nXCL seq=2\n"
    old.write_bytes(big)
    assert reported_seq([old]) == 2  # only the tail is read


def test_dirty_rates_are_read_from_the_console_in_order():
    text = "XCL seq=3 t=1.20\nXCL dirty mib_s=23.5\nnoise XCL dirty mib_s=7\nXCL seq=4 t=1.7\n"
    assert dirty_rates(text) == [23.5, 7.0]
    assert dirty_rates("XCL seq=1 t=0.5\n") == []
