"""Helpers for tests that look at the lab from outside, as an operator would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from xencenter_lite.core.model import VM
from xencenter_lite.engine import Engine
from xencenter_lite.lab.records import reported_seq, serial_log

HERE = Path(__file__).parent
LAB_CONFIG = HERE / "lab-test.toml"
SLOT = os.environ.get("XCL_TEST_LAB_SLOT", "")
if SLOT and not (SLOT.isdigit() and 1 <= int(SLOT) <= 9):
    raise SystemExit("XCL_TEST_LAB_SLOT must be a number from 1 to 9")
LAB_NAME = tomllib.loads(LAB_CONFIG.read_text())["name"] + SLOT


def lab_config_for_slot(folder: Path) -> Path:
    """The test lab's config, moved to its own names and subnets when a slot is set."""
    if not SLOT:
        return LAB_CONFIG
    text = LAB_CONFIG.read_text()
    text = re.sub(r'^name = "(\w+)"', rf'name = "\g<1>{SLOT}"', text, count=1, flags=re.M)
    text = text.replace("/test-lab", f"/test-lab-{SLOT}").replace("10.241.",
                                                                   f"10.{241 + int(SLOT)}.")
    out = folder / "lab-test.toml"
    out.write_text(text)
    return out


def vm_named(engine: Engine, name: str) -> VM:
    found = engine.snapshot().vms_named(name)
    assert len(found) == 1, f"expected one VM named {name}, found {found}"
    return found[0]


def netns(server: str) -> str:
    return f"{LAB_NAME}-{server}"


def iface_bytes(server: str, iface: str, direction: str = "tx") -> int:
    out = subprocess.run(
        ["ip", "netns", "exec", netns(server), "cat",
         f"/sys/class/net/{iface}/statistics/{direction}_bytes"],
        check=True, capture_output=True, text=True)
    return int(out.stdout)


def pattern_intact(path: str, fmt: str, pattern: int = 0x5A, length: str = "4M") -> bool:
    """The lab wrote `pattern` over the first 4 MiB of every disk; is it still there?"""
    out = subprocess.run(
        ["qemu-io", "-U", "-r", "-f", fmt, "-c", f"read -P 0x{pattern:x} 0 {length}", path],
        capture_output=True, text=True)
    return out.returncode == 0 and "Pattern verification failed" not in out.stdout + out.stderr \
        and bool(re.search(r"read \d+/\d+ bytes", out.stdout))


def image_layout(path: str) -> tuple[str | None, int | None]:
    """A qcow2 image's compat level and cluster size, as qemu-img reads them."""
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    return (info.get("format-specific", {}).get("data", {}).get("compat"),
            info.get("cluster-size"))


def cli_argv(*args: str, inventory: Path) -> list[str]:
    exe = shutil.which("xencenter-lite", path=str(Path(sys.executable).parent)) or "xencenter-lite"
    return [exe, "--inventory", str(inventory), *args]


def cli(*args: str, inventory: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(*args, inventory=inventory), capture_output=True,
                          text=True, timeout=timeout)


def virsh(uri: str, *args: str) -> str:
    return subprocess.run(["virsh", "-c", uri, *args], check=True, capture_output=True,
                          text=True).stdout


def bare_domain_xml(folder: Path, name: str) -> Path:
    """A file holding the smallest domain QEMU runs: 64 MiB, no devices, no disk."""
    kind = "kvm" if os.path.exists("/dev/kvm") else "qemu"
    xml = folder / f"{name}.xml"
    xml.write_text(f"""<domain type='{kind}'><name>{name}</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>""")
    return xml


def reported(engine: Engine, state_dir: Path, name: str) -> int | None:
    """A lab guest's last reported record, over the serial logs of every server it may be on."""
    return reported_seq(serial_log(state_dir, s, name) for s in engine.snapshot().servers)


# What a Linux kernel prints when it dies: under QEMU 7.2's TCG a live migration now and then
# loses or corrupts guest pages (docs/benchmarks.md), and the guest's kernel crashes on them.
_KERNEL_CRASH = re.compile(r"Kernel panic|general protection fault|BUG: |Oops: |invalid opcode: ")


class GuestKernelCrashed(AssertionError):
    """The guest's own kernel crashed (its console says so), not the move that carried it."""


def kernel_crash(state_dir: Path, server: str, name: str) -> str | None:
    """The line where the guest's kernel died on `server`, if it died after its last report."""
    try:
        text = serial_log(state_dir, server, name).read_bytes()[-65536:].decode(
            errors="replace")
    except OSError:
        return None
    after = text.rsplit("XCL seq=", 1)[-1]
    found = _KERNEL_CRASH.search(after)
    if found is None:
        return None
    start = after.rfind("\n", 0, found.start()) + 1
    end = after.find("\n", found.end())
    return after[start:end if end >= 0 else None].strip()


def guest_logs(engine: Engine, state_dir: Path, name: str, lines: int = 25) -> str:
    """Where a guest is, its state, and the end of its serial logs on every server: what a
    test that waited on the guest in vain should show."""
    parts = [f"{name}: {vm.state.value} on {vm.server}"
             for vm in engine.snapshot().vms_named(name)] or [f"{name}: not found"]
    for server in engine.snapshot().servers:
        path = serial_log(state_dir, server, name)
        try:
            tail = path.read_bytes()[-16384:].decode(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        parts.append(f"--- {path} (last {len(tail)} lines):\n" + "\n".join(tail))
    return "\n".join(parts)


def wait_working(engine: Engine, run: Any, state_dir: Path, name: str,
                 timeout: float = 240.0) -> int:
    """Wait until the guest's reports advance (a TCG guest on a busy two-core machine can
    take minutes to boot); returns the latest report."""
    from tests.conftest import until

    holder: list[int | None] = [None]

    def advanced() -> bool:
        now = reported(engine, state_dir, name)
        if holder[0] is None or now is None:
            holder[0] = now
            return False
        return now > holder[0]

    try:
        run(until(advanced, timeout=timeout, interval=0.5), timeout=timeout + 10)
    except AssertionError as exc:
        text = (f"{name} reported no new record in {timeout:.0f} s (last: {holder[0]}).\n"
                + guest_logs(engine, state_dir, name))
        for vm in engine.snapshot().vms_named(name):
            if (crash := kernel_crash(state_dir, vm.server, name)) is not None:
                raise GuestKernelCrashed(f"its kernel crashed on {vm.server}: {crash}\n"
                                         + text) from exc
        raise AssertionError(text) from exc
    seq = reported(engine, state_dir, name)
    assert seq is not None
    return seq


def yields_the_cpu(group: Path) -> bool:
    """Whether a CPU group is idle (cpu.idle) or, where the kernel has no such thing, has
    the least weight a group can have."""
    if (group / "cpu.idle").exists():
        return (group / "cpu.idle").read_text().strip() == "1"
    knob, least = ("cpu.shares", 2) if (group / "cpu.shares").exists() else ("cpu.weight", 1)
    return int((group / knob).read_text()) == least


def host_path(state_dir: Path, server: str, path: str) -> Path:
    """Where a file a lab server sees at `path` is on this machine: each server's
    /var/lib/libvirt is its own directory of the lab's state."""
    inside = "/var/lib/libvirt/"
    if path.startswith(inside):
        return state_dir / "hosts" / server / "lib" / path[len(inside):]
    return Path(path)


def fill_pattern(path: Path, fmt: str, pattern: int = 0x5A, length: str = "4M") -> None:
    """Write the lab's test pattern over the start of a disk image (not in use)."""
    subprocess.run(["qemu-io", "-f", fmt, "-c", f"write -P 0x{pattern:x} 0 {length}", str(path)],
                   check=True, capture_output=True, text=True)


def default_pool(uri: str) -> None:
    """virt-install's and virt-manager's `default` pool (/var/lib/libvirt/images), as they
    make it on a host that has none."""
    if "default" in virsh(uri, "pool-list", "--all", "--name").split():
        return
    virsh(uri, "pool-define-as", "default", "dir", "--target", "/var/lib/libvirt/images")
    virsh(uri, "pool-build", "default")
    virsh(uri, "pool-start", "default")
    virsh(uri, "pool-autostart", "default")


def virt_install(uri: str, name: str, *disks: str, memory_mib: int = 64,
                 transient: bool = False, extra: tuple[str, ...] = ()) -> str:
    """A VM made the way sysadmins make them: virt-install --import of existing volumes
    (`--disk vol=POOL/VOLUME`), no network (the lab's servers have none), no graphics,
    running TCG (`transient`: running, defined nowhere). Returns its UUID."""
    argv = ["virt-install", "--connect", uri, "--name", name, "--memory", str(memory_mib),
            "--vcpus", "1", "--import", "--osinfo", "detect=on,require=off",
            "--network", "none", "--graphics", "none", "--noautoconsole", "--virt-type", "qemu"]
    if transient:
        argv.append("--transient")
    argv += extra
    for d in disks:
        argv += ["--disk", d]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return virsh(uri, "domuuid", name).strip()


def remove_vm(uri: str, name: str) -> None:
    """Destroy and undefine a test VM with its storage, wherever it got to."""
    subprocess.run(["virsh", "-c", uri, "destroy", name], capture_output=True)
    subprocess.run(["virsh", "-c", uri, "undefine", name, "--remove-all-storage",
                    "--snapshots-metadata"], capture_output=True)


def domains(uri: str) -> list[str]:
    return virsh(uri, "list", "--all", "--name").split()


def sr_path(uri: str, sr: str) -> str:
    """The directory of SR (storage pool) `sr`, as the server sees it."""
    return virsh(uri, "pool-dumpxml", sr).split("<path>", 1)[1].split("</path>", 1)[0]


def where_defined(uris: dict[str, str], name: str) -> list[tuple[str, str]]:
    """(server, state) of every domain called `name`, asked of libvirt directly."""
    out = []
    for server, uri in uris.items():
        if name in domains(uri):
            out.append((server, virsh(uri, "domstate", name).strip()))
    return out


def job_on(run: Any, engine: Engine, start: Any, cancel_once_sending: bool = False,
           timeout: float = 120) -> Any:
    """One job on an engine of the test's own (over faulty or slowed links): start it,
    `start(engine)` the job, cancel it once data moves if asked, wait for its end, close
    the engine. Returns the job."""
    from tests.conftest import until

    async def scenario() -> Any:
        await engine.start(watch=False)
        try:
            job = start(engine)
            if cancel_once_sending:
                await until(lambda: job.bytes_done > 0 or job.state.finished, timeout=60)
                await engine.cancel(job)
            await engine.wait([job])
            return job
        finally:
            await engine.close()

    return run(scenario(), timeout)


def created_paths(job: Any) -> list[str]:
    """The volumes a job says it created ("Created PATH on SERVER")."""
    return [m.split(" ", 1)[1].rsplit(" on ", 1)[0] for m in job.messages
            if m.startswith("Created ")]


async def cancel_once_copying(engine: Engine, job: Any, after: float = 1.0) -> None:
    """Cancel `job` `after` seconds into its copy (some bytes moved), and wait for its end."""
    import asyncio

    from xencenter_lite.core.jobs import JobState

    while job.state not in (JobState.COPYING_DISKS, JobState.COPYING_MEMORY):
        assert not job.state.finished, (job.state, job.error, job.error_details)
        await asyncio.sleep(0.05)
    await asyncio.sleep(after)
    await engine.cancel(job)
    await engine.wait([job])
