"""The Linux guest's image, built without the network: module order, the cpio, the cache key."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from xencenter_lite.lab import guestimage, load_lab_config
from xencenter_lite.lab.errors import LabError
from xencenter_lite.lab.guestimage import cache_key, initramfs, kernel_cmdline, load_order, modinfo


def fake_module(info: dict[str, str]) -> bytes:
    """A minimal ELF64 file whose only content is a .modinfo section, as in a .ko."""
    modinfo_data = b"".join(f"{k}={v}\0".encode() for k, v in info.items())
    shstrtab = b"\0.shstrtab\0.modinfo\0"
    body_offset = 64
    shoff = body_offset + len(modinfo_data) + len(shstrtab)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack(
        "<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 1)

    def section(name: int, offset: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, 3, 0, 0, offset, size, 0, 0, 1, 0)

    sections = (b"\0" * 64 + section(1, body_offset + len(modinfo_data), len(shstrtab))
                + section(11, body_offset, len(modinfo_data)))
    return header + modinfo_data + shstrtab + sections


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, contents, (rdev major, minor)) of a newc archive."""
    entries, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = (fields[1], fields[6], fields[9], fields[10],
                                            fields[11])
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[pos:pos + size], (rmaj, rmin))
        pos += size
        pos += -pos % 4


def test_modinfo_reads_the_section() -> None:
    ko = fake_module({"license": "GPL", "depends": "virtio,virtio_ring", "name": "virtio_pci"})
    assert modinfo(ko) == {"license": "GPL", "depends": "virtio,virtio_ring",
                           "name": "virtio_pci"}


def test_modules_load_after_their_dependencies_and_builtins_are_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "kernel" / "drivers"
    tree.mkdir(parents=True)
    modules = {
        "virtio_blk": "virtio,virtio_ring",
        "virtio_pci": "virtio_ring,virtio,virtio_pci_modern_dev",
        "virtio_ring": "virtio",
        "virtio": "",
        "virtio_pci_modern_dev": "",
        "unused": "",
        "crc32c_generic": "",
    }
    for name, depends in modules.items():
        (tree / f"{name}.ko").write_bytes(fake_module({"depends": depends}))
    (tmp_path / "modules.builtin").write_text("kernel/drivers/virtio_pci_modern_dev.ko\n")

    order = [name for name, _ in load_order(tmp_path, ["virtio_pci", "virtio_blk"])]
    assert order == ["virtio", "virtio_ring", "virtio_pci", "virtio_blk"]
    with pytest.raises(LabError, match="no module nope"):
        load_order(tmp_path, ["nope"])


def test_the_initramfs_holds_busybox_init_modules_and_a_console() -> None:
    archive = read_cpio(initramfs(b"BUSYBOX", [("virtio", b"KO1"), ("virtio_blk", b"KO2")]))
    assert archive["init"][0] == 0o100755
    assert archive["init"][1].startswith(b"#!/bin/busybox sh\n")
    assert archive["bin/busybox"][:2] == (0o100755, b"BUSYBOX")
    assert archive["dev/console"][0] == 0o020600 and archive["dev/console"][2] == (5, 1)
    assert archive["lib/modules/virtio_blk.ko"][1] == b"KO2"
    assert archive["lib/modules/load-order"][1] == b"virtio\nvirtio_blk\n"
    assert {"proc", "sys", "dev", "tmp"} <= set(archive)


def test_the_cache_key_follows_the_packages_and_the_init_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    packages = [("linux-image-6.1.0-56-amd64", "6.1.192-2"),
                ("busybox-static", "1:1.35.0-4+deb12u1+b1")]
    key = cache_key(packages)
    assert key.startswith("linux-image-6.1.0-56-amd64_6.1.192-2__busybox-static_1-1.35.0")
    assert "/" not in key and ":" not in key
    assert cache_key([(packages[0][0], "6.1.193-1"), packages[1]]) != key
    monkeypatch.setattr(guestimage, "INIT_SCRIPT", guestimage.INIT_SCRIPT + "# changed\n")
    assert cache_key(packages) != key


def test_the_kernel_command_line_carries_the_workload_settings() -> None:
    config = load_lab_config(None)
    web = next(g for g in config.guests if g.name == "web-1")
    assert kernel_cmdline(web).split() == [
        "console=ttyS0", "quiet", "xcl.name=web-1", "xcl.dirty_mib=8", "xcl.start=16384",
        "xcl.slots=32768",
    ]
