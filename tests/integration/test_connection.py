"""Connections: a server that can't be reached, events instead of polling, a lost link."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.conftest import until
from tests.labtools import bare_domain_xml, cli, netns, virsh, vm_named, yields_the_cpu
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.model import VmState
from xencenter_lite.engine import Engine
from xencenter_lite.lab import Lab, load_lab_config
from xencenter_lite.lab.system import idle_cpu_group, in_cpu_group, parent_pid

UNREACHABLE = """
[[servers]]
name = "lab-x9"
uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
[servers.networks]
storage = "10.9.9.9"
"""


def _libvirtd_pid(engine: Engine, server: str) -> int:
    uri = engine.snapshot().servers[server].uri
    socket = parse_qs(urlsplit(uri).query)["socket"][0]
    return int(Path(socket).with_name("libvirtd.pid").read_text())


def test_an_unreachable_server_is_listed_as_disconnected_and_refused(
    lab_inventory: Path, tmp_path: Path
) -> None:
    inv = tmp_path / "inventory.toml"
    inv.write_text(lab_inventory.read_text() + UNREACHABLE)
    listed = cli("list", "--json", inventory=inv)
    assert listed.returncode == 0, listed.stderr
    servers = {s["name"]: s for s in json.loads(listed.stdout)["servers"]}
    assert servers["lab-x9"]["connected"] is False and servers["lab-x9"]["error"]
    assert servers["lab-a1"]["connected"] is True
    refused = cli("precheck", "web-1", "--to", "lab-x9", "--json", inventory=inv)
    assert refused.returncode == 2
    codes = {p["code"] for p in json.loads(refused.stdout)["problems"]}
    assert "DESTINATION_DISCONNECTED" in codes


def test_libvirt_events_update_the_model_without_polling(
    lab_inventory: Path, engine: Engine, run: Any
) -> None:
    quiet = Engine(load_inventory(lab_inventory), poll_interval=3600)
    run(quiet.start())
    try:
        vm = vm_named(quiet, "build-1")
        assert vm.state is VmState.HALTED
        uri = quiet.snapshot().servers[vm.server].uri
        virsh(uri, "start", vm.uuid)
        try:
            run(until(lambda: quiet.snapshot().vm(vm.key) is not None
                      and quiet.snapshot().vm(vm.key).state is VmState.RUNNING,  # type: ignore[union-attr]
                      timeout=5))
        finally:
            virsh(uri, "destroy", vm.uuid)
        run(until(lambda: quiet.snapshot().vm(vm.key).state is VmState.HALTED,  # type: ignore[union-attr]
                  timeout=5))
    finally:
        run(quiet.close())


def test_a_lost_connection_shows_disconnected_and_comes_back(
    lab_inventory: Path, engine: Engine, run: Any
) -> None:
    def held() -> tuple[set[tuple[str, str]], set[str]]:
        """What the console shows on lab-b1: its VMs and its SRs."""
        snap = engine.snapshot()
        return {v.key for v in snap.vms_on("lab-b1")}, {sr.name for sr in snap.srs_on("lab-b1")}

    before = held()
    assert before[1], "lab-b1 shows no SRs to begin with"
    pid = _libvirtd_pid(engine, "lab-b1")
    os.kill(pid, signal.SIGSTOP)  # the server stops answering; keepalive notices
    try:
        run(until(lambda: not engine.snapshot().servers["lab-b1"].connected, timeout=40))
        assert engine.snapshot().servers["lab-a1"].connected
        assert held() == (set(), set())
    finally:
        os.kill(pid, signal.SIGCONT)
    run(until(lambda: engine.snapshot().servers["lab-b1"].connected, timeout=40))
    # Back with what it held before (which VMs depends on what earlier tests moved there).
    run(until(lambda: held() == before, timeout=10))


def test_ctrl_c_cancels_the_migration_cleanly(lab_inventory: Path, engine: Engine,
                                              run: Any) -> None:
    vm = vm_named(engine, "app-1")
    dest = "lab-a2" if vm.server != "lab-a2" else "lab-b1"
    exe = str(Path(sys.executable).parent / "xencenter-lite")
    proc = subprocess.Popen([exe, "--inventory", str(lab_inventory), "migrate", "app-1",
                             "--to", dest, "--sr", "Local storage", "--bandwidth", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not engine.snapshot().vm(vm.key) or not engine.snapshot().vm(vm.key).job_running:  # type: ignore[union-attr]
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        run(asyncio.sleep(0.2))
        run(engine.refresh(vm.server))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "cancelled" in out
    snap = run(engine.refresh())
    still = snap.vm(vm.key)
    assert still is not None and still.state is VmState.RUNNING
    assert vm.name not in virsh(snap.servers[dest].uri, "list", "--all", "--name").split()
    dest_sr = snap.sr(dest, "Local storage")
    assert dest_sr is not None
    leftovers = [p for p in Path(dest_sr.path).iterdir() if p.name.startswith("app-1")]
    assert leftovers == []


@contextlib.contextmanager
def _bare_qemu(uri: str, folder: Path, name: str) -> Iterator[int]:
    """A bare domain running on the lab server at `uri`; its QEMU's PID. Destroyed after."""
    virsh(uri, "create", str(bare_domain_xml(folder, name)))
    try:
        qemu_run = Path(parse_qs(urlsplit(uri).query)["socket"][0]).with_name("qemu")
        yield int((qemu_run / f"{name}.pid").read_text())
    finally:
        virsh(uri, "destroy", name)


def test_lab_servers_reap_the_qemus_they_start(engine: Engine, tmp_path: Path) -> None:
    """libvirt waits for a QEMU it stops to be gone, zombie included, and QEMU is an orphan:
    each lab libvirtd runs under tini, a subreaper, so its QEMUs are reaped as they exit, as
    a server's init would, not whenever this machine's PID 1 gets to them."""
    uri = engine.snapshot().servers["lab-a2"].uri
    libvirtd = _libvirtd_pid(engine, "lab-a2")
    reaper = parent_pid(libvirtd)
    assert os.path.basename(os.readlink(f"/proc/{reaper}/exe")) == "tini"
    with _bare_qemu(uri, tmp_path, "reaped-1") as qemu:
        assert parent_pid(qemu) == reaper
    assert not Path(f"/proc/{qemu}").exists()  # gone, not left a zombie


def test_lab_servers_and_the_qemus_they_start_yield_the_cpu_to_the_console(
    engine: Engine, lab_config_path: Path, tmp_path: Path
) -> None:
    """The lab's servers stand for other machines: tini, libvirtd and every QEMU it starts
    share one CPU group that gets only the time nothing else wants, so on this machine they
    cannot take the CPU from the console or a command beside them. This process is not in
    it."""
    name = Lab(load_lab_config(lab_config_path)).cpu_group_name
    group = idle_cpu_group(name)  # the lab's, as it is
    assert group is not None, "this machine has no CPU controller for the lab's servers"
    assert yields_the_cpu(group)
    libvirtd = _libvirtd_pid(engine, "lab-a1")
    assert in_cpu_group(libvirtd, name)
    assert in_cpu_group(parent_pid(libvirtd) or 1, name)  # its tini
    assert not in_cpu_group(os.getpid(), name)
    uri = engine.snapshot().servers["lab-a1"].uri
    with _bare_qemu(uri, tmp_path, "weighed-1") as qemu:
        # libvirt starts it in a session of its own; the group holds it all the same.
        assert os.getsid(qemu) != os.getsid(libvirtd)
        assert in_cpu_group(qemu, name)


def test_lab_guests_disks_bypass_the_page_cache(engine: Engine, lab_config_path: Path) -> None:
    """The lab's guests' disks use cache="none" where the SRs allow direct I/O (they do on
    this machine, tmpfs SRs included), as OpenStack and oVirt set them: a disk copied to a
    server is written as it arrives, not held in the server's memory until the copy ends."""
    snap = engine.snapshot()
    modes = {
        (vm.name, driver.get("cache"))
        for vm in snap.vms if vm.state is VmState.RUNNING
        for driver in ET.fromstring(virsh(snap.servers[vm.server].uri, "dumpxml", vm.name))
        .findall("devices/disk/driver")
    }
    assert modes and {mode for _vm, mode in modes} == {"none"}, modes
    assert "Guests' disks: cache=none" in Lab(load_lab_config(lab_config_path)).status()


_RECEIVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5999))
s.settimeout(20)
print(len(s.recv(65535)), flush=True)
"""
# Linux's IP_MTU_DISCOVER / IP_PMTUDISC_DO (Python's socket module does not name them): the
# datagram goes unfragmented or not at all.
_SEND_WHOLE = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)
for _ in range(50):
    s.sendto(b"x" * int(sys.argv[2]), (sys.argv[1], 5999))
    time.sleep(0.1)
"""


def _send_whole(src: str, address: str, size: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns(src), sys.executable, "-c", _SEND_WHOLE,
                           address, str(size)], capture_output=True, text=True, timeout=30)


def test_the_storage_network_carries_jumbo_frames_whole(engine: Engine) -> None:
    """Storage networks often run jumbo frames; the lab's does (MTU 9000, from server to
    server through its switch): 8972 bytes of UDP, not to be fragmented, arrive whole. The
    management network keeps 1500: the same datagram is refused at the sender."""
    snap = engine.snapshot()
    storage = snap.servers["lab-b1"].addresses["storage"]
    receiver = subprocess.Popen(["ip", "netns", "exec", netns("lab-b1"), sys.executable, "-c",
                                 _RECEIVE, storage], stdout=subprocess.PIPE, text=True)
    try:
        sent = _send_whole("lab-a1", storage, 8972)
        assert sent.returncode == 0, sent.stderr
        out, _ = receiver.communicate(timeout=30)
        assert out.strip() == "8972"
    finally:
        receiver.kill()
        receiver.wait()
    refused = _send_whole("lab-a1", snap.servers["lab-b1"].addresses["management"], 8972)
    assert refused.returncode != 0 and "Message too long" in refused.stderr
