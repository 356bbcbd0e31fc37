"""A VM's NICs on the destination: each finds its network or bridge there, or is plugged
into another one (--nic, the wizard's Networking page); the checks refuse the move before
anything is made when one would not (libvirt would refuse the VM there a moment later)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from builders import Fleet, codes

from xencenter_lite.cli import UsageError, _nic_map
from xencenter_lite.core.checks import check_plans
from xencenter_lite.core.domxml import parse_domain, rewrite_nics
from xencenter_lite.core.model import Nic, VirtualNetwork

LAN = Nic("52:54:00:00:00:01", "network", "lan", "virtio")
BR0 = Nic("52:54:00:00:00:02", "bridge", "br0", "e1000")
USER = Nic("52:54:00:00:00:03", "user", "", "virtio")

# virt-install --network network=lan --network bridge=br0, as libvirt 9.0 keeps it (running)
DOMAIN = """<domain type='qemu'><name>nic-1</name><uuid>u-1</uuid><memory>65536</memory>
<devices>
  <interface type='network'><mac address='52:54:00:DC:75:6D'/>
    <source network='lan' portid='5f0a' bridge='br0'/><target dev='vnet0'/>
    <model type='virtio'/><alias name='net0'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>
  <interface type='bridge'><mac address='52:54:00:e4:e6:5e'/><source bridge='br0'/>
    <model type='e1000'/></interface>
  <interface type='user'><mac address='52:54:00:aa:aa:aa'/><model type='virtio'/></interface>
  <interface type='bridge'><mac address='52:54:00:bb:bb:bb'/>
    <source network='lan' portid='77' bridge='br0'/><model type='virtio'/></interface>
</devices></domain>"""


def _fleet(fleet: Fleet, networks: tuple[VirtualNetwork, ...] = (VirtualNetwork(
        "lan", True, "br0", "bridge"),), bridges: frozenset[str] | None = frozenset({"br0"})
           ) -> Fleet:
    for name in ("lab-a1", "lab-a2", "lab-b1"):
        fleet.server(name, virtual_networks=networks, bridges=bridges)
    return fleet


def test_nics_are_read_with_their_network_or_bridge_and_mac() -> None:
    nics = parse_domain(DOMAIN).nics
    assert [n.bridge for n in nics] == ["br0", "br0", "", "br0"]  # where each is plugged
    assert [(n.mac, n.type, n.source, n.model) for n in nics] == [
        ("52:54:00:dc:75:6d", "network", "lan", "virtio"),
        ("52:54:00:e4:e6:5e", "bridge", "br0", "e1000"),
        ("52:54:00:aa:aa:aa", "user", "", "virtio"),
        # a running NIC on a bridge-mode network, as libvirt 9.0 shows it: still the network's
        ("52:54:00:bb:bb:bb", "network", "lan", "virtio")]


def test_a_nic_rewritten_keeps_its_mac_model_and_address_and_loses_the_old_port() -> None:
    out = rewrite_nics(DOMAIN, {"52:54:00:dc:75:6d": ("bridge", "br1"),
                                "52:54:00:e4:e6:5e": ("network", "default")})
    first, second, third, _fourth = ET.fromstring(out).findall("./devices/interface")
    assert first.get("type") == "bridge" and first.find("source").attrib == {"bridge": "br1"}
    assert first.find("model").get("type") == "virtio"
    assert first.find("address").get("slot") == "0x03"
    assert first.find("mac").get("address") == "52:54:00:DC:75:6D"
    assert second.get("type") == "network"
    assert second.find("source").attrib == {"network": "default"}
    assert third.get("type") == "user"  # not asked for: as it was
    assert rewrite_nics(DOMAIN, {}) == DOMAIN


def test_nics_whose_network_and_bridge_are_there_pass(fleet: Fleet) -> None:
    _fleet(fleet)
    vm = fleet.vm("nic-1", nics=(LAN, BR0, USER))
    plan = fleet.plan(vm, "lab-a2")
    assert not [c for c in codes(check_plans(fleet.snapshot(), [plan])) if "NIC" in c]
    assert plan.nic_rewrites == {}


def test_a_missing_network_or_bridge_is_refused_naming_the_nic_and_what_to_do(
        fleet: Fleet) -> None:
    _fleet(fleet)
    fleet.server("lab-b1", virtual_networks=(VirtualNetwork("default", True, "virbr0", "nat"),),
                 bridges=frozenset({"virbr0", "br1"}))
    vm = fleet.vm("nic-1", nics=(LAN, BR0))
    problems = check_plans(fleet.snapshot(), [fleet.plan(vm, "lab-b1")])
    nic = [p for p in problems if p.code.startswith("NIC_")]
    assert [p.code for p in nic] == ["NIC_NETWORK_MISSING", "NIC_BRIDGE_UNKNOWN"]
    assert nic[0].blocking and not nic[1].blocking  # a bridge in no use may still be there
    assert "NIC 52:54:00:00:00:01 of 'nic-1' goes to network 'lan', which 'lab-b1' does not" \
        in nic[0].message
    assert "(default, bridge:br1, bridge:virbr0)" in nic[0].message
    assert "--nic 52:54:00:00:00:01=NETWORK" in nic[0].message
    assert "bridge 'br0', which no network or running VM on 'lab-b1' uses" in nic[1].message


def test_mapped_nics_are_checked_where_they_go_and_rewritten(fleet: Fleet) -> None:
    _fleet(fleet)
    fleet.server("lab-b1", virtual_networks=(VirtualNetwork("default", True, "virbr0", "nat"),
                                             VirtualNetwork("off", False)),
                 bridges=frozenset({"virbr0", "br1"}))
    vm = fleet.vm("nic-1", nics=(LAN, BR0))
    plan = fleet.plan(vm, "lab-b1", nics={"52:54:00:00:00:01": "default",
                                          "52:54:00:00:00:02": "bridge:br1"})
    assert not [c for c in codes(check_plans(fleet.snapshot(), [plan])) if "NIC" in c]
    assert plan.nic_rewrites == {"52:54:00:00:00:01": ("network", "default"),
                                 "52:54:00:00:00:02": ("bridge", "br1")}
    inactive = fleet.plan(vm, "lab-b1", nics={"52:54:00:00:00:01": "off",
                                              "52:54:00:00:00:02": "bridge:nope"})
    problems = [p for p in check_plans(fleet.snapshot(), [inactive]) if "NIC" in p.code]
    assert [p.code for p in problems] == ["NIC_NETWORK_INACTIVE", "NIC_BRIDGE_UNKNOWN"]
    assert "virsh net-start off" in problems[0].message
    assert "the chosen bridge 'nope'" in problems[1].message
    unknown = fleet.plan(vm, "lab-b1", nics={"52:54:00:00:00:09": "default"})
    assert "UNKNOWN_NIC" in codes(check_plans(fleet.snapshot(), [unknown]))


def test_a_server_without_a_network_driver_warns_rather_than_refuses(fleet: Fleet) -> None:
    _fleet(fleet)
    vm = fleet.vm("nic-1", nics=(LAN,))
    fleet.server("lab-b1", virtual_networks=(), networks_known=False)  # no network driver
    (warning,) = [p for p in check_plans(fleet.snapshot(), [fleet.plan(vm, "lab-b1")])
                  if "NIC" in p.code]
    assert warning.code == "NIC_NETWORK_UNKNOWN" and not warning.blocking


def test_nic_option_values_are_checked() -> None:
    assert _nic_map(["52:54:00:AA:BB:CC=default", "52:54:00:aa:bb:cd=bridge:br0"]) == {
        "52:54:00:aa:bb:cc": "default", "52:54:00:aa:bb:cd": "bridge:br0"}
    for bad in (["default"], ["52:54:00=lan"], ["52:54:00:aa:bb:cc=bridge:"],
                ["52:54:00:aa:bb:cc=a", "52:54:00:AA:BB:CC=b"]):
        with pytest.raises(UsageError, match="--nic"):
            _nic_map(bad)
