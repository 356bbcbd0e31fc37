"""VMs with NICs, as virt-install makes them (a NIC on a libvirt network, one on a bridge),
moved between servers whose networks differ: refused before anything is made while a NIC
would find nothing on the destination, then moved across pools with both NICs mapped.

Each lab server gets bridges in its own network namespace and a libvirt network of forward
mode "bridge" on one (no firewall rules needed)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.labtools import cli, netns, remove_vm, virsh, virt_install, vm_named
from xencenter_lite.core.checks import blocking
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import MigrationRequest
from xencenter_lite.engine import Engine

NAME = "nic-1"


def _bridge(server: str, name: str, present: bool) -> None:
    ns = netns(server)
    if present:
        subprocess.run(["ip", "-n", ns, "link", "add", name, "type", "bridge"],
                       capture_output=True)
        subprocess.run(["ip", "-n", ns, "link", "set", name, "up"], check=True)
    else:
        subprocess.run(["ip", "-n", ns, "link", "del", name], capture_output=True)


def _network(uri: str, name: str, bridge: str, tmp: Path, present: bool) -> None:
    subprocess.run(["virsh", "-c", uri, "net-destroy", name], capture_output=True)
    subprocess.run(["virsh", "-c", uri, "net-undefine", name], capture_output=True)
    if present:
        xml = tmp / f"{name}.xml"
        xml.write_text(f"<network><name>{name}</name><forward mode='bridge'/>"
                       f"<bridge name='{bridge}'/></network>")
        virsh(uri, "net-define", str(xml))
        virsh(uri, "net-start", name)


@pytest.fixture
def nic_vm(engine: Engine, run: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """nic-1 on lab-a1 (disk on the pool's shared SR), NICs on network 'lan' (bridge br0)
    and on bridge br0; lab-b1 has network 'office' on br7 and bridge br8 instead.
    Returns the MACs (network NIC, bridge NIC)."""
    uris = {n: s.uri for n, s in engine.snapshot().servers.items()}
    volume = f"{NAME}.qcow2"

    def clean() -> None:
        for uri in uris.values():
            remove_vm(uri, NAME)
        subprocess.run(["virsh", "-c", uris["lab-a1"], "vol-delete", "--pool",
                        "Shared storage", volume], capture_output=True)
        _network(uris["lab-a1"], "lan", "br0", tmp_path, False)
        _network(uris["lab-b1"], "office", "br7", tmp_path, False)
        for server, bridge in (("lab-a1", "br0"), ("lab-b1", "br7"), ("lab-b1", "br8")):
            _bridge(server, bridge, False)

    clean()
    _bridge("lab-a1", "br0", True)
    _network(uris["lab-a1"], "lan", "br0", tmp_path, True)
    _bridge("lab-b1", "br7", True)
    _bridge("lab-b1", "br8", True)
    _network(uris["lab-b1"], "office", "br7", tmp_path, True)
    virsh(uris["lab-a1"], "vol-create-as", "Shared storage", volume, "16M", "--format", "qcow2")
    try:
        virt_install(uris["lab-a1"], NAME, f"vol=Shared storage/{volume}", memory_mib=32,
                     extra=("--network", "network=lan,model=virtio",
                            "--network", "bridge=br0,model=e1000"))
        run(engine.refresh())
        macs = {n.kind: n.mac for n in vm_named(engine, NAME).nics}
        yield macs["network"], macs["bridge"]
    finally:
        clean()
        run(engine.refresh())


def test_nics_whose_network_is_missing_refuse_the_move_then_mapped_they_move_across_pools(
        engine: Engine, run: Any, lab_inventory: Path, nic_vm: tuple[str, str]) -> None:
    net_mac, br_mac = nic_vm
    vm = vm_named(engine, NAME)
    b1 = engine.snapshot().servers["lab-b1"]
    # Read from libvirt: the network, and the bridge it uses (br8 is used by nothing).
    assert "office" in b1.nic_targets and "bridge:br7" in b1.nic_targets
    assert {(n.kind, n.source) for n in vm.nics} == {("network", "lan"), ("bridge", "br0")}
    assert "bridge:br0" in engine.snapshot().servers["lab-a1"].nic_targets  # nic-1 uses it

    # Unmapped: lab-b1 has no network 'lan' (refused) and uses no bridge br0 (a warning).
    request = MigrationRequest(vm.key, "lab-b1", sr="Local storage")
    problems = engine.check([engine.plan(request)])
    nic = {p.code: p for p in problems if p.code.startswith("NIC_")}
    assert set(nic) == {"NIC_NETWORK_MISSING", "NIC_BRIDGE_UNKNOWN"}, problems
    assert nic["NIC_NETWORK_MISSING"].blocking and not nic["NIC_BRIDGE_UNKNOWN"].blocking
    assert f"--nic {net_mac}=NETWORK" in nic["NIC_NETWORK_MISSING"].message
    refused = cli("precheck", NAME, "--to", "lab-b1", "--sr", "Local storage",
                  inventory=lab_inventory)
    assert refused.returncode == 2 and "NIC_NETWORK_MISSING" in refused.stdout, refused.stdout
    volumes = virsh(b1.uri, "vol-list", "Local storage")
    assert NAME not in volumes  # nothing was made

    # Mapped, across pools (a storage migration to the standalone server).
    mapped = MigrationRequest(vm.key, "lab-b1", sr="Local storage",
                              nics={net_mac: "office", br_mac: "bridge:br8"})
    assert not blocking(engine.check([engine.plan(mapped)]))
    (job,) = engine.migrate([mapped])
    run(engine.wait([job]), 300)
    assert job.state is JobState.DONE, (job.error, job.error_details)
    moved = vm_named(engine, NAME)
    assert moved.server == "lab-b1" and moved.state is VmState.RUNNING
    assert {n.mac: (n.kind, n.source) for n in moved.nics} == {
        net_mac: ("network", "office"), br_mac: ("bridge", "br8")}
    for flags in ((), ("--inactive",)):  # the running VM and its definition
        root = ET.fromstring(virsh(b1.uri, "dumpxml", *flags, NAME))
        sources = {n.find("mac").get("address"): n.find("source").attrib  # type: ignore[union-attr]
                   for n in root.findall("./devices/interface")}
        assert sources[net_mac].get("network") == "office", sources
        assert sources[br_mac] == {"bridge": "br8"}, sources
