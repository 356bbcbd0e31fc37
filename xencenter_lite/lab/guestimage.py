"""The lab's Linux guest: Debian's kernel booted directly with a busybox initramfs.

Built from Debian packages (`apt-get download`, `dpkg-deb -x`) the first time a lab needs it
and cached under CACHE_DIR, keyed by the package versions and the init script, so later
`lab up` runs reuse it. The kernel and the initramfs stay on the host: every lab server sees
the same filesystem, so a migrated guest finds them on its new server too.

The initramfs holds static busybox, the virtio modules the guest needs and an /init that runs
the lab's workload (see INIT_SCRIPT): it appends checksummed records to its last disk and
reports its progress on the serial console, so tests can prove that a guest moved alive and
lost nothing (xencenter_lite.lab.records reads both back).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from xencenter_lite.lab import records
from xencenter_lite.lab.config import GuestConfig
from xencenter_lite.lab.errors import LabError
from xencenter_lite.lab.system import run

CACHE_DIR = Path("/var/cache/xencenter-lite/guest")
KERNEL_META_PACKAGE = "linux-image-amd64"  # depends on the current linux-image-X-amd64
BUSYBOX_PACKAGE = "busybox-static"
# What the guest needs as modules (virtio_console is not among them: the console is ttyS0,
# whose 8250 driver is built in). Their dependencies are found in the modules themselves.
MODULES = ("virtio_pci", "virtio_blk", "virtio_balloon")
DOWNLOAD_TIMEOUT = 600.0
RECORDS_DISK_SERIAL = "xcl-records"  # the <serial> of the disk the workload writes to

# /init, run by the kernel as PID 1 (busybox ash). Kernel command line (see kernel_cmdline):
# xcl.name, xcl.dirty_mib, xcl.start (first record sector), xcl.slots (records in the ring).
INIT_SCRIPT = r"""#!/bin/busybox sh
# xencenter-lite lab guest: a workload that proves a moving guest stays alive and intact.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
for m in $(cat /lib/modules/load-order); do insmod "/lib/modules/$m.ko"; done

name=guest dirty=0 start=16384 slots=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        xcl.name=*) name=${arg#*=} ;;
        xcl.dirty_mib=*) dirty=${arg#*=} ;;
        xcl.start=*) start=${arg#*=} ;;
        xcl.slots=*) slots=${arg#*=} ;;
    esac
done
hostname "$name"

# The workload disk carries the serial "xcl-records" (the guest's last disk).
dev=
for try in $(seq 100); do
    for s in /sys/block/vd*/serial; do
        [ "$(cat "$s" 2>/dev/null)" = xcl-records ] && dev=/dev/$(basename "${s%/serial}")
    done
    [ -n "$dev" ] && break
    usleep 100000
done

# Memory kept dirty: dirty_mib MiB of a tmpfs file rewritten in place every second, from one
# 1 MiB random block (so the tmpfs holds dirty_mib + 1 MiB), paced to dirty_mib MiB/s; the
# rate achieved is printed every 5 s ("XCL dirty mib_s=R").
# (cs sets $cs to the uptime in centiseconds without a subshell: a fork costs a TCG guest.)
cs() { read u _ </proc/uptime; cs=$((${u%.*} * 100 + 1${u#*.} - 100)); }
if [ "$dirty" -gt 0 ]; then
    mount -t tmpfs -o size=$((dirty + 2))m tmpfs /tmp
    dd if=/dev/urandom of=/tmp/block bs=1M count=1 2>/dev/null
    blocks=$(for i in $(seq "$dirty"); do printf '/tmp/block '; done)
    (
        cs; t0=$cs n=0
        while :; do
            cs; a=$cs
            cat $blocks 1<>/tmp/dirty
            n=$((n + dirty))
            cs; b=$cs
            [ $((b - a)) -lt 100 ] && usleep $(((100 - (b - a)) * 10000))
            cs; b=$cs
            if [ $((b - t0)) -ge 500 ]; then
                r=$((n * 1000 / (b - t0)))
                echo "XCL dirty mib_s=$((r / 10)).$((r % 10))"
                t0=$b n=0
            fi
        done
    ) &
fi

if [ -z "$dev" ] || [ "$slots" -le 0 ]; then
    echo "XCL error: no workload disk"
    while :; do sleep 3600; done
fi

# Continue after the last valid record already on the disk (highest sequence number first).
next=$(dd if="$dev" bs=512 skip="$start" count="$slots" 2>/dev/null | tr -d '\000' \
    | grep '^XCLREC [0-9]* [0-9a-f]* ' | sort -k2,2nr | head -n 16 \
    | while read -r tag seq crc payload; do
        if [ "$(printf %s "$payload" | crc32)" = "$crc" ]; then echo $((seq + 1)); break; fi
    done)
next=${next:-0}
echo "XCL start dev=$dev next=$next slots=$slots dirty_mib=$dirty"

seq=$next last=-1 reported=0
while :; do
    read up _ </proc/uptime
    payload="$name t=$up"
    crc=$(printf %s "$payload" | crc32)
    if printf '%-511s\n' "XCLREC $seq $crc $payload" | dd of="$dev" bs=512 count=1 \
            seek=$((start + seq % slots)) iflag=fullblock conv=notrunc,fsync 2>/dev/null; then
        last=$seq
        seq=$((seq + 1))
    else
        echo "XCL error: write of record $seq failed"
        sleep 1
    fi
    now=$((${up%.*} * 100 + 1${up#*.} - 100))
    if [ $((now - reported)) -ge 50 ] && [ "$last" -ge 0 ]; then
        echo "XCL seq=$last t=$up"
        reported=$now
    fi
    usleep 500000  # leave the CPU to the other guests: TCG guests share two cores
done
"""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path


def kernel_cmdline(guest: GuestConfig) -> str:
    """The guest's kernel command line: the console, and the workload's parameters."""
    last = guest.disks[-1]
    return (
        f"console=ttyS0 quiet xcl.name={guest.name} xcl.dirty_mib={guest.dirty_mib} "
        f"xcl.start={records.START // records.RECORD_SIZE} "
        f"xcl.slots={records.slots_for(last.size_mib * 1024 * 1024)}"
    )


def ensure_image(log: Callable[[str], None]) -> GuestImage:
    """The cached guest image for the current Debian packages; built when missing."""
    try:
        packages = _resolve_packages()
    except LabError as exc:  # no package lists and no way to fetch them: use what we have
        cached = _cached_images()
        if not cached:
            raise
        log(f"Using the cached guest image {cached[0].kernel.parent.name} ({exc})")
        return cached[0]
    key = cache_key(packages)
    image = _image_in(CACHE_DIR / key)
    if image is not None:
        return image
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Labs of other test slots may build at the same time: one builds, the others wait.
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        image = _image_in(CACHE_DIR / key)
        if image is None:
            started = time.monotonic()
            log(f"Building the guest image from {', '.join(f'{p} {v}' for p, v in packages)}")
            _build(packages, CACHE_DIR / key)
            image = _image_in(CACHE_DIR / key)
            assert image is not None
            log(f"Guest image built in {time.monotonic() - started:.1f} s: {CACHE_DIR / key}")
    return image


def cache_key(packages: Iterable[tuple[str, str]]) -> str:
    """A directory name from the package versions and a digest of what goes in beside them."""
    recipe = hashlib.sha256((INIT_SCRIPT + " ".join(MODULES)).encode()).hexdigest()[:12]
    parts = [f"{name}_{version.replace(':', '-')}" for name, version in packages]
    return "__".join([*parts, recipe])


def _cached_images() -> list[GuestImage]:
    """Complete cached images built with today's init script, newest first."""
    recipe = cache_key([])
    folders = sorted(CACHE_DIR.glob(f"*__{recipe}"), key=lambda p: p.stat().st_mtime,
                     reverse=True)
    return [image for f in folders if (image := _image_in(f)) is not None]


def _image_in(folder: Path) -> GuestImage | None:
    image = GuestImage(folder / "vmlinuz", folder / "initrd.gz")
    return image if image.kernel.is_file() and image.initrd.is_file() else None


# ---- Debian packages -----------------------------------------------------------------------


def _resolve_packages() -> list[tuple[str, str]]:
    """[(kernel package, version), (busybox-static, version)] as apt would install them."""
    for attempt in range(2):
        depends = run(["apt-cache", "depends", KERNEL_META_PACKAGE], check=False).stdout
        kernel = re.search(r"Depends: (linux-image-\S+-amd64)\b", depends)
        if kernel:
            names = [kernel.group(1), BUSYBOX_PACKAGE]
            policy = run(["apt-cache", "policy", *names], check=False).stdout
            versions = dict(re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)",
                                       policy, flags=re.M))
            if all(versions.get(n, "(none)") != "(none)" for n in names):
                return [(n, versions[n]) for n in names]
        if attempt == 0:
            _apt_update()
    raise LabError(
        f"apt knows no candidate for {KERNEL_META_PACKAGE} or {BUSYBOX_PACKAGE}, even after "
        "apt-get update; check /etc/apt/sources.list (Debian 12 main)."
    )


def _apt_update() -> None:
    run(["apt-get", "update", "-q"], timeout=DOWNLOAD_TIMEOUT, what="apt-get update")


def _download(packages: list[tuple[str, str]], folder: Path) -> list[Path]:
    args = ["apt-get", "download", "-q", *(f"{n}={v}" for n, v in packages)]
    proc = run(args, check=False, timeout=DOWNLOAD_TIMEOUT, cwd=folder)
    if proc.returncode != 0:  # stale package lists name files the mirror no longer has
        _apt_update()
        run(args, timeout=DOWNLOAD_TIMEOUT, cwd=folder, what="apt-get download")
    debs = sorted(folder.glob("*.deb"))
    if len(debs) != len(packages):
        raise LabError(f"apt-get download left {len(debs)} packages in {folder}, not 2.")
    return debs


# ---- building ------------------------------------------------------------------------------


def _build(packages: list[tuple[str, str]], target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=".build-", dir=CACHE_DIR) as tmp:
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        debs = _download(packages, work)
        for deb in debs:
            run(["dpkg-deb", "-x", str(deb), str(root)], what=f"unpacking {deb.name}")
        kernel_version = packages[0][0].removeprefix("linux-image-")
        out = work / "out"
        out.mkdir()
        shutil.copyfile(root / "boot" / f"vmlinuz-{kernel_version}", out / "vmlinuz")
        busybox = (root / "bin" / "busybox").read_bytes()
        modules = load_order(root / "lib" / "modules" / kernel_version, MODULES)
        (out / "initrd.gz").write_bytes(gzip.compress(initramfs(busybox, modules), 6, mtime=0))
        os.replace(out, target)


def load_order(module_dir: Path, wanted: Iterable[str]) -> list[tuple[str, bytes]]:
    """(name, .ko contents) of `wanted` and their dependencies, dependencies first.

    Debian's package ships no modules.dep (depmod writes it when the package is installed),
    so dependencies come from each module's own .modinfo section. Built-in ones are skipped.
    """
    builtin = {Path(line).stem.replace("-", "_")
               for line in (module_dir / "modules.builtin").read_text().split()}
    files = {p.stem.replace("-", "_"): p for p in (module_dir / "kernel").rglob("*.ko")}
    order: list[tuple[str, bytes]] = []

    def add(name: str) -> None:
        name = name.replace("-", "_")
        if name in builtin or any(n == name for n, _ in order):
            return
        if name not in files:
            raise LabError(f"the kernel has no module {name} (looked in {module_dir}).")
        data = files[name].read_bytes()
        for dep in filter(None, modinfo(data).get("depends", "").split(",")):
            add(dep)
        order.append((name, data))

    for name in wanted:
        add(name)
    return order


def modinfo(ko: bytes) -> dict[str, str]:
    """The key=value strings of a kernel module's .modinfo section (ELF64, little endian)."""
    (shoff,) = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", ko, shoff + i * shentsize)
        return name, offset, size

    _, names, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if ko[names + name:ko.index(b"\0", names + name)] == b".modinfo":
            items = ko[offset:offset + size].decode(errors="replace").split("\0")
            return dict(item.split("=", 1) for item in items if "=" in item)
    return {}


def initramfs(busybox: bytes, modules: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed cpio (newc) archive: busybox, /init, the modules and their order."""
    out = io.BytesIO()
    ino = 0

    def entry(path: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nonlocal ino
        ino += 1
        name = path.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name), 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + name)
        out.write(b"\0" * (-out.tell() % 4) + data + b"\0" * (-len(data) % 4))

    for folder in ("bin", "dev", "lib", "lib/modules", "proc", "sys", "tmp"):
        entry(folder, 0o040755)
    entry("dev/console", 0o020600, rdev=(5, 1))  # the kernel opens it before /init runs
    entry("bin/busybox", 0o100755, busybox)
    entry("init", 0o100755, INIT_SCRIPT.encode())
    for name, data in modules:
        entry(f"lib/modules/{name}.ko", 0o100644, data)
    entry("lib/modules/load-order", 0o100644, "".join(f"{n}\n" for n, _ in modules).encode())
    entry("TRAILER!!!", 0)
    return out.getvalue()
