"""The lab's servers over qemu+ssh and qemu+tls, as an admin workstation reaches them (lab
`ssh = true`, `tls = true`): an engine of its own on inventory-ssh.toml migrates, cancels and
moves a disk; one on inventory-tls.toml migrates with --tls, and the wire shows it
encrypted; and each way a server can be out of reach is said in words with what to do, from
libvirt's real errors."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _complete
from tests.labtools import (
    cancel_once_copying,
    created_paths,
    fill_pattern,
    host_path,
    netns,
    pattern_intact,
    remove_vm,
    sr_path,
    virsh,
    virt_install,
    vm_named,
)
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import MigrationKind, MigrationRequest
from xencenter_lite.engine import Engine
from xencenter_lite.lab import load_lab_config

POOL = ("lab-a1", "lab-a2")


@pytest.fixture(scope="module")
def ssh_inventory(lab_inventory: Path) -> Path:
    path = lab_inventory.with_name("inventory-ssh.toml")
    assert path.exists(), "the test lab has ssh = true: lab up writes inventory-ssh.toml"
    return path


@pytest.fixture(scope="module")
def over_ssh(ssh_inventory: Path, engine: Engine,
             loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    """An engine that reaches every server over qemu+ssh (the session's engine, over the
    servers' sockets, is read again afterwards: it did not see these moves)."""
    eng = Engine(load_inventory(ssh_inventory), poll_interval=2.0)
    _complete(loop, eng.start(watch=False))
    yield eng
    _complete(loop, eng.close())
    _complete(loop, engine.refresh())


def _wait(run: Any, eng: Engine, job: Any) -> None:
    run(eng.wait([job]), 300)
    assert job.state is JobState.DONE, (job.state, job.error, job.error_details)


def test_the_servers_over_ssh_are_the_same_servers(over_ssh: Engine, engine: Engine) -> None:
    ssh, unix = over_ssh.snapshot().servers, engine.snapshot().servers
    assert set(ssh) == set(unix)
    for name, server in ssh.items():
        assert server.uri.startswith("qemu+ssh://root@") and server.connected, server
        assert server.host_uuid == unix[name].host_uuid  # known by what libvirt says


def test_migrations_over_ssh_memory_then_storage(over_ssh: Engine, run: Any) -> None:
    run(over_ssh.refresh())
    web = vm_named(over_ssh, "web-1")
    if web.server not in POOL:
        (job,) = over_ssh.migrate([MigrationRequest(web.key, "lab-a1", sr="Shared storage")])
        _wait(run, over_ssh, job)
        web = vm_named(over_ssh, "web-1")
    dest = POOL[1] if web.server == POOL[0] else POOL[0]
    plan = over_ssh.plan(MigrationRequest(web.key, dest))
    (job,) = over_ssh.migrate([MigrationRequest(web.key, dest)])
    _wait(run, over_ssh, job)
    assert plan.kind is MigrationKind.MEMORY
    moved = vm_named(over_ssh, "web-1")
    assert moved.server == dest and moved.state is VmState.RUNNING
    # The source's libvirtd opened the connection to the destination itself (peer to peer)
    # over ssh, with the lab's key and known_hosts.
    assert "web-1" not in virsh(over_ssh.snapshot().servers[web.server].uri, "list",
                                "--all", "--name").split()

    db = vm_named(over_ssh, "db-1")
    target, sr = ("lab-b1", "Fast storage") if db.server != "lab-b1" else ("lab-a1",
                                                                           "Local storage")
    (job,) = over_ssh.migrate([MigrationRequest(db.key, target, sr=sr)])
    _wait(run, over_ssh, job)
    moved = vm_named(over_ssh, "db-1")
    assert moved.server == target and moved.state is VmState.RUNNING
    assert all(d.sr == sr and pattern_intact(d.path or "", d.format)
               for d in moved.hard_disks)


def test_a_cancel_over_ssh_leaves_the_vm_where_it_was(over_ssh: Engine, run: Any) -> None:
    run(over_ssh.refresh())
    vm = vm_named(over_ssh, "app-1")
    dest = "lab-a1" if vm.server != "lab-a1" else "lab-b1"
    (job,) = over_ssh.migrate([MigrationRequest(vm.key, dest, sr="Local storage",
                                                bandwidth_mib_s=1)])

    run(cancel_once_copying(over_ssh, job), 120)
    assert job.state is JobState.CANCELLED, (job.state, job.error, job.error_details)
    created = created_paths(job)
    assert created and not any(os.path.exists(p) for p in created), job.messages
    snap = run(over_ssh.refresh())
    still = snap.vm(vm.key)
    assert still is not None and still.state is VmState.RUNNING
    assert vm.name not in virsh(snap.servers[dest].uri, "list", "--all", "--name").split()


def test_a_live_disk_move_over_ssh(over_ssh: Engine, run: Any) -> None:
    run(over_ssh.refresh())
    vm = vm_named(over_ssh, "app-1")
    disk = vm.disk("vda")
    assert disk is not None and disk.path is not None
    # One of the lab's own SRs (others, such as virt-install's `default`, are under the
    # server's own /var/lib/libvirt).
    lab_srs = ("Local storage", "Fast storage", "Shared storage")
    target = next(sr.name for sr in over_ssh.snapshot().srs_on(vm.server)
                  if sr.name in lab_srs and sr.name != disk.sr)
    job = over_ssh.move_disk(vm.key, "vda", target)
    _wait(run, over_ssh, job)
    new = vm_named(over_ssh, "app-1").disk("vda")
    assert new is not None and new.sr == target and not os.path.exists(disk.path)
    assert pattern_intact(new.path or "", new.format)


# ---- TLS ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def over_tls(lab_inventory: Path, engine: Engine,
             loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    path = lab_inventory.with_name("inventory-tls.toml")
    assert path.exists(), "the test lab has tls = true: lab up writes inventory-tls.toml"
    eng = Engine(load_inventory(path), poll_interval=2.0)
    _complete(loop, eng.start(watch=False))
    yield eng
    _complete(loop, eng.close())
    _complete(loop, engine.refresh())


def _captured(server: str, what: Any) -> bytes:
    """Every byte on `server`'s storage interface while `what()` runs (tcpdump)."""
    pcap = Path(f"/tmp/xcl-tls-{os.getpid()}-{server}.pcap")
    dump = subprocess.Popen(["ip", "netns", "exec", netns(server), "tcpdump", "-i", "storage",
                             "-s", "0", "-U", "-w", str(pcap)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # tcpdump listening
        what()
        time.sleep(0.5)
    finally:
        dump.terminate()
        dump.wait(10)
    data = pcap.read_bytes()
    pcap.unlink()
    return data


def test_over_tls_the_servers_answer_and_a_tls_migration_is_encrypted_on_the_wire(
        over_tls: Engine, engine: Engine, run: Any, state_dir: Path) -> None:
    """The VM's disk holds the lab's pattern (runs of 'Z'): sent plainly, the storage
    network shows it; with --tls (libvirt's TLS for memory and disks), it does not."""
    servers = over_tls.snapshot().servers
    for name, server in servers.items():
        assert server.uri.startswith("qemu+tls://") and server.connected, server
        assert server.host_uuid == engine.snapshot().servers[name].host_uuid
    uris = {n: engine.snapshot().servers[n].uri for n in servers}
    name, volume, sr = "tls-1", "tls-1.qcow2", "Local storage"
    for uri in uris.values():
        remove_vm(uri, name)
    virsh(uris["lab-b1"], "vol-create-as", sr, volume, "16M", "--format", "qcow2")
    fill_pattern(host_path(state_dir, "lab-b1", f"{sr_path(uris['lab-b1'], sr)}/{volume}"),
                 "qcow2")
    try:
        virt_install(uris["lab-b1"], name, f"vol={sr}/{volume}", memory_mib=32)
        run(over_tls.refresh())
        marker = b"Z" * 4096  # 4 KiB of the pattern, as a disk copy sends it

        def move(to: str, tls: bool) -> None:
            vm = vm_named(over_tls, name)
            (job,) = over_tls.migrate([MigrationRequest(vm.key, to, sr=sr, tls=tls)])
            run(over_tls.wait([job]), 300)
            assert job.state is JobState.DONE, (job.error, job.error_details)
            assert vm_named(over_tls, name).server == to

        secret = _captured("lab-b1", lambda: move("lab-a1", True))
        assert len(secret) > 4 * 1024 * 1024 and marker not in secret
        plain = _captured("lab-b1", lambda: move("lab-b1", False))
        assert marker in plain  # the same look finds the pattern when it is not encrypted
        moved = vm_named(over_tls, name)
        assert moved.state is VmState.RUNNING
        assert pattern_intact(moved.hard_disks[0].path or "", "qcow2")
    finally:
        for uri in uris.values():
            remove_vm(uri, name)
        run(over_tls.refresh())


# ---- out of reach, in words ------------------------------------------------------------------
def _error(run: Any, eng: Engine, uri: str) -> str:
    vetted = run(eng.vet_new_server(uri), 60)
    assert not vetted.reachable and vetted.error, vetted
    return str(vetted.error)


def test_each_way_a_server_is_out_of_reach_is_said_with_what_to_do(
        over_ssh: Engine, run: Any, lab_config_path: Path) -> None:
    cfg = load_lab_config(lab_config_path)
    a1 = cfg.address("lab-a1", cfg.management_network)
    assert "refused the ssh login as nobody" in _error(
        run, over_ssh, f"qemu+ssh://nobody@{a1}/system")
    assert f"{cfg.console_address} refused ssh on port 22" in _error(
        run, over_ssh, f"qemu+ssh://root@{cfg.console_address}/system")
    assert "does not resolve" in _error(run, over_ssh, "qemu+ssh://root@no-such.invalid/system")
    assert "there is no socket at /nonexistent" in _error(
        run, over_ssh, "qemu+unix:///system?socket=/nonexistent")
    assert "no TLS certificates" in _error(run, over_ssh, f"qemu+tls://{a1}/system")
    known = cfg.ssh_dir / "known_hosts"
    aside = known.with_name("known_hosts.aside")
    shutil.move(known, aside)
    try:
        known.write_text("")
        message = _error(run, over_ssh, f"qemu+ssh://root@{a1}/system")
        assert f"ssh does not know the host key of {a1}: connect once with ssh" in message
    finally:
        shutil.move(aside, known)
