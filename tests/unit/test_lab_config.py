"""The lab's configuration file: defaults, derived names, and a clear message for every mistake.

No root and no libvirt needed: nothing here builds a lab.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import signal
import subprocess
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.labtools import yields_the_cpu
from xencenter_lite.lab import (
    DEFAULT_CONFIG_PATH,
    LabConfig,
    LabConfigError,
    LabError,
    load_lab_config,
    run_lab_command,
)
from xencenter_lite.lab.domains import guest_xml, pool_xml
from xencenter_lite.lab.guestimage import GuestImage
from xencenter_lite.lab.inventory import render_inventory, toml_string
from xencenter_lite.lab.lab import config_fingerprint
from xencenter_lite.lab.network import tbf_args

LAB_PACKAGE = Path(DEFAULT_CONFIG_PATH).parents[1] / "xencenter_lite" / "lab"
IMAGE = GuestImage(Path("/cache/guest/vmlinuz"), Path("/cache/guest/initrd.gz"))


# ---- helpers -------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(value)


def dump(data: dict[str, Any]) -> str:
    """A TOML document for `data` (inline tables only: enough for these tests)."""
    return "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in data.items())


def default_data() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text())


def write(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(data if isinstance(data, str) else dump(data))
    return path


def load_modified(tmp_path: Path, change: Callable[[dict[str, Any]], object]) -> LabConfig:
    data = copy.deepcopy(default_data())
    change(data)
    return load_lab_config(write(tmp_path, data))


def config_error(tmp_path: Path, change: Callable[[dict[str, Any]], object]) -> LabConfigError:
    with pytest.raises(LabConfigError) as info:
        load_modified(tmp_path, change)
    return info.value


@pytest.fixture
def config() -> LabConfig:
    return load_lab_config(None)


# ---- the default file ----------------------------------------------------------------------


def test_default_path_is_the_resources_file() -> None:
    expected = Path(__file__).resolve().parents[2] / "resources" / "lab.toml"
    assert expected == DEFAULT_CONFIG_PATH
    assert DEFAULT_CONFIG_PATH.is_file()


def test_defaults_load(config: LabConfig) -> None:
    assert config.name == "xcl"
    assert config.state_dir == Path("/var/lib/xencenter-lite/lab")
    assert config.accel == "auto"
    assert config.path == DEFAULT_CONFIG_PATH
    assert [
        (n.name, str(n.subnet), n.rate_mib_s, n.management, n.mtu) for n in config.networks
    ] == [
        ("management", "10.240.1.0/24", 25, True, 1500),
        ("storage", "10.240.2.0/24", 200, False, 9000),
    ]
    assert config.management_network == "management"
    assert [(s.name, s.host_number) for s in config.servers] == [
        ("lab-a1", 11),
        ("lab-a2", 12),
        ("lab-b1", 13),
    ]
    assert all(s.vm_memory_limit_mib == 2048 for s in config.servers)
    assert config.server("lab-b1").default_sr == "Local storage"
    assert config.server("lab-a1").default_sr is None
    (pool,) = config.pools
    assert (pool.name, pool.members, pool.default_sr, pool.ha_enabled) == (
        "Production",
        ("lab-a1", "lab-a2"),
        "Shared storage",
        False,
    )
    assert config.pool_of("lab-a2") == pool
    assert config.pool_of("lab-b1") is None
    assert {sr.name: (sr.servers, sr.shared, sr.size_mib) for sr in config.srs} == {
        "Shared storage": (("lab-a1", "lab-a2"), True, None),
        "Local storage": (("lab-a1", "lab-a2", "lab-b1"), False, None),
        "Fast storage": (("lab-b1",), False, None),
        "Small storage": (("lab-b1",), False, 64),
    }


def test_default_guests(config: LabConfig) -> None:
    guests = {g.name: g for g in config.guests}
    assert set(guests) == {"web-1", "db-1", "app-1", "build-1"}
    assert [(g.server, g.state, g.folder) for g in guests.values()] == [
        ("lab-a1", "running", "/Web"),
        ("lab-a1", "running", "/Databases"),
        ("lab-b1", "running", ""),
        ("lab-a2", "halted", ""),
    ]
    assert all((g.memory_mib, g.vcpus) == (128, 1) for g in guests.values())
    assert all((g.os, g.dirty_mib) == ("linux", 8) for g in guests.values())
    web, db = guests["web-1"], guests["db-1"]
    assert [(d.dev, d.sr, d.size_mib, d.format) for d in web.disks] == [
        ("vda", "Shared storage", 256, "qcow2")
    ]
    assert [(d.dev, d.sr, d.size_mib, d.format) for d in db.disks] == [
        ("vda", "Local storage", 256, "qcow2"),
        ("vdb", "Local storage", 64, "raw"),
    ]
    assert [(d.sr, d.size_mib) for d in guests["app-1"].disks] == [("Local storage", 128)]
    assert not guests["build-1"].running


def test_optional_keys_take_defaults(tmp_path: Path) -> None:
    data = {
        "name": "mini",
        "state_dir": "/tmp/mini-lab",
        "networks": {"mgmt": {"subnet": "10.9.0.0/24", "rate_mib_s": 10, "management": True}},
        "servers": [{"name": "h1", "host_number": 5}],
        "srs": [{"name": "Local", "servers": ["h1"]}],
        "guests": [{"name": "g", "server": "h1", "disks": [{"sr": "Local", "size_mib": 8}]}],
    }
    config = load_lab_config(write(tmp_path, data))
    assert config.accel == "auto"
    assert config.pools == ()
    (guest,) = config.guests
    assert (guest.state, guest.memory_mib, guest.vcpus, guest.folder) == ("running", 128, 1, "")
    assert (guest.os, guest.dirty_mib) == ("none", 8)
    assert [(d.dev, d.format, d.data_mib) for d in guest.disks] == [("vda", "qcow2", 4)]
    assert config.server("h1").vm_memory_limit_mib is None


def test_a_disk_can_hold_more_data(tmp_path: Path) -> None:
    config = load_modified(tmp_path, _set("guests.1.disks.0.data_mib", 100))
    assert [d.data_mib for d in config.guests[1].disks] == [100, 4]


# ---- derived names -------------------------------------------------------------------------


def test_derived_names(config: LabConfig) -> None:
    assert config.namespaces == ["xcl-sw", "xcl-lab-a1", "xcl-lab-a2", "xcl-lab-b1"]
    assert config.bridge("management") == "br-management"
    assert config.server_interface("storage") == "storage"
    assert config.switch_port("lab-b1", "storage") == "p3-storage"
    assert config.address("lab-a2", "storage") == "10.240.2.12"
    assert config.address("lab-b1", "management") == "10.240.1.13"
    assert config.uri("lab-a1") == (
        "qemu+unix:///system?socket=/var/lib/xencenter-lite/lab/hosts/lab-a1/run/libvirt-sock"
    )
    assert config.inventory_path == Path("/var/lib/xencenter-lite/lab/inventory.toml")


def test_interface_names_fit_the_kernel_limit() -> None:
    longest = "abcdefghij"  # the longest network name allowed
    assert len(LabConfig.bridge(longest)) <= 15
    assert len(f"p99-{longest}") <= 15
    assert len(LabConfig.server_interface(longest)) <= 15


def test_sr_paths(config: LabConfig) -> None:
    srs = {sr.name: sr for sr in config.srs}
    shared, local = srs["Shared storage"], srs["Local storage"]
    root = Path("/var/lib/xencenter-lite/lab")
    assert config.sr_path(shared, "lab-a1") == config.sr_path(shared, "lab-a2")
    assert config.sr_path(shared, "lab-a1") == root / "sr" / "Shared storage"
    assert config.sr_path(local, "lab-a1") == root / "hosts/lab-a1/sr/Local storage"
    assert config.sr_path(local, "lab-a1") != config.sr_path(local, "lab-b1")
    assert config.tmpfs_dirs() == [(root / "hosts/lab-b1/sr/Small storage", 64)]
    assert config.sr_uuid(shared, "lab-a1") == config.sr_uuid(shared, "lab-a2")
    assert config.sr_uuid(local, "lab-a1") != config.sr_uuid(local, "lab-a2")


def test_uuids_are_deterministic_and_distinct(config: LabConfig, tmp_path: Path) -> None:
    again = load_lab_config(None)
    hosts = [config.host_uuid(s.name) for s in config.servers]
    assert hosts == [again.host_uuid(s.name) for s in again.servers]
    assert len(set(hosts)) == len(hosts)
    assert config.guest_uuid("web-1") == again.guest_uuid("web-1")
    other = load_modified(tmp_path, lambda d: d.update(name="xclt"))
    assert other.guest_uuid("web-1") != config.guest_uuid("web-1")
    assert other.host_uuid("lab-a1") != config.host_uuid("lab-a1")


def test_second_lab_does_not_collide(tmp_path: Path, config: LabConfig) -> None:
    def change(d: dict[str, Any]) -> None:
        d.update(name="xclt", state_dir=str(tmp_path / "lab"))
        d["networks"]["management"]["subnet"] = "10.241.1.0/24"
        d["networks"]["storage"]["subnet"] = "10.241.2.0/24"

    other = load_modified(tmp_path, change)
    assert not set(other.namespaces) & set(config.namespaces)
    assert all(not ns.startswith("xcl-") for ns in other.namespaces)
    assert other.uri("lab-a1") != config.uri("lab-a1")


def test_fingerprint_follows_the_content(config: LabConfig, tmp_path: Path) -> None:
    same = load_modified(tmp_path, lambda d: None)
    assert config_fingerprint(same) == config_fingerprint(config)
    changed = load_modified(tmp_path, lambda d: d["servers"][0].update(host_number=21))
    assert config_fingerprint(changed) != config_fingerprint(config)


def test_shaping_bucket_allows_the_full_rate() -> None:
    args = tbf_args(200 * 1024 * 1024)
    assert args[:3] == ["tbf", "rate", f"{200 * 1024 * 1024 * 8}bit"]
    burst = int(args[args.index("burst") + 1])
    assert burst >= 200 * 1024 * 1024 // 100  # at least 10 ms worth at full rate
    assert int(tbf_args(1024)[4]) == 256 * 1024


# ---- libvirt XML -------------------------------------------------------------------------


def test_guest_xml(config: LabConfig) -> None:
    db = next(g for g in config.guests if g.name == "db-1")
    text = guest_xml(config, db, "kvm", IMAGE)
    assert (
        '<metadata><xcl:vm xmlns:xcl="urn:xencenter-lite:vm:1"><xcl:home>lab-a1</xcl:home>'
        "<xcl:folder>/Databases</xcl:folder></xcl:vm></metadata>"
    ) in text
    dom = ET.fromstring(text)
    assert dom.get("type") == "kvm"
    assert dom.findtext("uuid") == config.guest_uuid("db-1")
    assert dom.find("cpu") is None
    assert dom.find("devices/interface") is None
    assert dom.find("devices/memballoon").get("model") == "virtio"
    assert dom.find("devices/serial").get("type") == "file"
    assert dom.findtext("os/kernel") == "/cache/guest/vmlinuz"
    assert dom.findtext("os/initrd") == "/cache/guest/initrd.gz"
    assert dom.find("os/boot") is None
    cmdline = dom.findtext("os/cmdline").split()
    assert cmdline[:2] == ["console=ttyS0", "quiet"]
    # vdb (64 MiB) is the last disk: records from 8 MiB to its end, and it is marked for /init.
    assert {"xcl.name=db-1", "xcl.dirty_mib=8", "xcl.start=16384", "xcl.slots=32768"} <= set(
        cmdline
    )
    disks = dom.findall("devices/disk")
    assert [d.findtext("serial") for d in disks] == [None, "xcl-records"]
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    assert [d.find("target").get("bus") for d in disks] == ["virtio", "virtio"]
    assert [d.find("driver").get("type") for d in disks] == ["qcow2", "raw"]
    assert [d.find("driver").get("cache") for d in disks] == [None, None]
    local = "/var/lib/xencenter-lite/lab/hosts/lab-a1/sr/Local storage"
    assert disks[1].find("source").get("file") == f"{local}/db-1-vdb.raw"
    assert dom.findtext("memory") == "128"


def test_guest_xml_disk_cache_mode(config: LabConfig) -> None:
    db = next(g for g in config.guests if g.name == "db-1")
    dom = ET.fromstring(guest_xml(config, db, "kvm", IMAGE, cache="none"))
    assert [d.find("driver").get("cache") for d in dom.findall("devices/disk")] == [
        "none", "none"]


def test_direct_io_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    from xencenter_lite.lab.system import direct_io_works

    assert direct_io_works(tmp_path)  # /tmp here is on the machine's disk (ext4)
    assert list(tmp_path.iterdir()) == []
    assert not direct_io_works(tmp_path / "missing")


def test_guest_xml_without_an_os(config: LabConfig) -> None:
    web = dataclasses.replace(config.guests[0], os="none")
    dom = ET.fromstring(guest_xml(config, web, "kvm"))
    assert dom.find("os/boot").get("dev") == "hd"
    assert dom.find("os/kernel") is None
    assert dom.find("devices/disk/serial") is None
    with pytest.raises(ValueError, match="linux guest"):
        guest_xml(config, config.guests[0], "kvm")


def test_guest_xml_without_folder_and_tcg(config: LabConfig) -> None:
    app = next(g for g in config.guests if g.name == "app-1")
    dom = ET.fromstring(guest_xml(config, app, "qemu", IMAGE))
    assert dom.get("type") == "qemu"
    meta = dom.find("metadata/{urn:xencenter-lite:vm:1}vm")
    assert meta.findtext("{urn:xencenter-lite:vm:1}home") == "lab-b1"
    assert meta.find("{urn:xencenter-lite:vm:1}folder") is None


def test_pool_xml_keeps_spaces(config: LabConfig) -> None:
    small = next(sr for sr in config.srs if sr.name == "Small storage")
    pool = ET.fromstring(pool_xml(config, small, "lab-b1"))
    assert pool.get("type") == "dir"
    assert pool.findtext("name") == "Small storage"
    assert pool.findtext("target/path") == str(config.sr_path(small, "lab-b1"))


# ---- inventory -----------------------------------------------------------------------------

EXPECTED_INVENTORY = """\
management_network = "management"

[networks.management]
rate_mib_s = 25

[networks.storage]
rate_mib_s = 200

[[servers]]
name = "lab-a1"
uri = "qemu+unix:///system?socket=/var/lib/xencenter-lite/lab/hosts/lab-a1/run/libvirt-sock"
vm_memory_limit_mib = 2048
[servers.networks]
management = "10.240.1.11"
storage = "10.240.2.11"

[[servers]]
name = "lab-a2"
uri = "qemu+unix:///system?socket=/var/lib/xencenter-lite/lab/hosts/lab-a2/run/libvirt-sock"
vm_memory_limit_mib = 2048
[servers.networks]
management = "10.240.1.12"
storage = "10.240.2.12"

[[servers]]
name = "lab-b1"
uri = "qemu+unix:///system?socket=/var/lib/xencenter-lite/lab/hosts/lab-b1/run/libvirt-sock"
vm_memory_limit_mib = 2048
default_sr = "Local storage"
[servers.networks]
management = "10.240.1.13"
storage = "10.240.2.13"

[[pools]]
name = "Production"
members = ["lab-a1", "lab-a2"]
default_sr = "Shared storage"
ha_enabled = false
"""


def test_inventory_format(config: LabConfig) -> None:
    assert render_inventory(config) == EXPECTED_INVENTORY


def test_inventory_parses_back(config: LabConfig) -> None:
    data = tomllib.loads(render_inventory(config))
    assert data["management_network"] == "management"
    assert data["networks"]["storage"] == {"rate_mib_s": 200}
    b1 = data["servers"][2]
    assert b1["networks"] == {"management": "10.240.1.13", "storage": "10.240.2.13"}
    assert "default_sr" not in data["servers"][0]
    assert data["pools"][0]["members"] == ["lab-a1", "lab-a2"]


def test_with_ssh_the_lab_also_describes_its_servers_over_qemu_ssh(tmp_path: Path) -> None:
    from xencenter_lite.lab.ssh import client_config, sshd_config

    config = load_lab_config(None)
    assert config.ssh  # the built-in lab has it; without the key it is off:
    assert not load_modified(tmp_path, lambda d: d.pop("ssh")).ssh
    assert config.console_address == "10.240.1.254" and config.console_interface == "xcl-con"
    data = tomllib.loads(render_inventory(config, "ssh"))
    assert [s["uri"] for s in data["servers"]] == [
        "qemu+ssh://root@10.240.1.11/system", "qemu+ssh://root@10.240.1.12/system",
        "qemu+ssh://root@10.240.1.13/system"]
    assert tomllib.loads(render_inventory(config))["servers"][0]["uri"].startswith(
        "qemu+unix:")
    # ssh to those addresses only uses the lab's key and known_hosts, never the user's.
    client = client_config(config)
    assert "Host 10.240.1.11 10.240.1.12 10.240.1.13\n" in client
    assert f"UserKnownHostsFile {config.state_dir}/ssh/known_hosts" in client
    assert "StrictHostKeyChecking yes" in client and "BatchMode yes" in client
    server = sshd_config(config, "lab-a2")
    assert "ListenAddress 10.240.1.12\n" in server and "PasswordAuthentication no" in server


def test_with_tls_libvirtd_listens_with_the_labs_certificates(tmp_path: Path) -> None:
    from xencenter_lite.lab.daemon import libvirtd_conf, qemu_conf

    assert load_lab_config(None).tls  # the built-in lab has it; without the key it is off:
    plain = load_modified(tmp_path, lambda d: d.pop("tls"))
    assert not plain.tls
    assert "listen_tls = 0" in libvirtd_conf(plain, "lab-a1").splitlines()
    assert "migrate_tls" not in qemu_conf(plain, "lab-a1")
    config = load_modified(tmp_path, lambda d: d.update(tls=True))
    conf = libvirtd_conf(config, "lab-a2").splitlines()
    assert "listen_tls = 1" in conf and "listen_tcp = 0" in conf
    assert 'listen_addr = "10.240.1.12"' in conf
    assert f'cert_file = "{config.state_dir}/pki/lab-a2/servercert.pem"' in conf
    assert (f'migrate_tls_x509_cert_dir = "{config.state_dir}/pki/lab-a2/qemu"'
            in qemu_conf(config, "lab-a2"))
    data = tomllib.loads(render_inventory(config, "tls"))
    assert data["servers"][1]["uri"] == (
        f"qemu+tls://10.240.1.12/system?pkipath={config.state_dir}/pki/client")


def test_inventory_quotes_strings(tmp_path: Path) -> None:
    name = 'The "big" pool \\ one'
    config = load_modified(tmp_path, lambda d: d["pools"][0].update(name=name))
    assert tomllib.loads(render_inventory(config))["pools"][0]["name"] == name
    control = "a\u0001b"
    assert tomllib.loads("x = " + toml_string(control))["x"] == control


# ---- errors: every one names the file, the key and the fix ------------------------------


def test_duplicate_server_name(tmp_path: Path) -> None:
    error = config_error(tmp_path, lambda d: d["servers"][2].update(name="lab-a1"))
    assert str(error) == (
        "lab.toml: servers[2].name: duplicate server name 'lab-a1'; give each server its own name."
    )
    assert error.key == "servers[2].name"
    assert isinstance(error, LabError)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets the key at `path` ("servers.0.name") to `value`."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return change


ERROR_CASES = [
    # unknown keys, at every level
    (_set("colour", "red"), "colour", "unknown key; remove it or use one of: name, state_dir"),
    (_set("servers.0.memory", 1), "servers[0].memory", "unknown key"),
    (_set("networks.storage.speed", 5), "networks.storage.speed", "unknown key"),
    (_set("pools.0.ha", True), "pools[0].ha", "use one of: name, members, default_sr"),
    (_set("srs.1.path", "/x"), "srs[1].path", "unknown key"),
    (_set("guests.1.disks.0.size", 1), "guests[1].disks[0].size", "unknown key"),
    (_set("guests.0.cpu", "host"), "guests[0].cpu", "unknown key"),
    # wrong types
    (
        _set("networks.storage.rate_mib_s", "200"),
        "networks.storage.rate_mib_s",
        "expected an integer, got a string ('200'); write e.g. rate_mib_s = 200.",
    ),
    (_set("servers.0.host_number", True), "servers[0].host_number", "got a boolean (true)"),
    (_set("servers.0.host_number", 11.5), "servers[0].host_number", "got a decimal number"),
    (_set("pools.0.ha_enabled", "no"), "pools[0].ha_enabled", "expected true or false"),
    (_set("pools.0.members", "lab-a1"), "pools[0].members", "expected an array of strings"),
    (_set("servers", {"name": "lab-a1"}), "servers", "write one [[servers]] table per item"),
    (_set("guests.0.disks", {"sr": "x"}), "guests[0].disks", "one [[guests.disks]] table"),
    (_delete("networks"), "networks", "missing; add a [networks.NAME] table"),
    (_set("name", 5), "name", "expected a string, got an integer (5)"),
    (_set("networks", ["management"]), "networks", "expected tables like [networks.management]"),
    (_set("networks.storage", 5), "networks.storage", "expected a table"),
    (_set("guests.0.disks.0.size_mib", "256M"), "guests[0].disks[0].size_mib", "integer"),
    (_set("srs.0.shared", 1), "srs[0].shared", "expected true or false"),
    # missing keys
    (_delete("servers.0.host_number"), "servers[0].host_number", "missing; add it, e.g."),
    (_delete("name"), "name", 'missing; add it, e.g. name = "xcl".'),
    (_delete("networks.storage.subnet"), "networks.storage.subnet", "missing"),
    (_delete("guests.0.server"), "guests[0].server", "missing"),
    (_set("servers", []), "servers", "no servers"),
    # references that do not exist
    (
        _set("pools.0.members", ["lab-a1", "lab-x"]),
        "pools[0].members[1]",
        "no server named 'lab-x'; the servers are lab-a1, lab-a2, lab-b1.",
    ),
    (_set("srs.0.servers", ["lab-a1", "lab-z"]), "srs[0].servers[1]", "no server named 'lab-z'"),
    (_set("guests.0.server", "lab-c1"), "guests[0].server", "no server named 'lab-c1'"),
    (
        _set("guests.2.disks.0.sr", "Shared storage"),
        "guests[2].disks[0].sr",
        "no SR named 'Shared storage' on lab-b1; the SRs on lab-b1 are Local storage, "
        "Fast storage, Small storage",
    ),
    (_set("guests.0.disks.0.sr", "Nowhere"), "guests[0].disks[0].sr", "no SR named 'Nowhere'"),
    (
        _set("pools.0.default_sr", "Fast storage"),
        "pools[0].default_sr",
        "no SR named 'Fast storage' on lab-a1 (pool Production)",
    ),
    (_set("servers.2.default_sr", "Big storage"), "servers[2].default_sr", "no SR named"),
    (
        _set("servers.0.default_sr", "Local storage"),
        "servers[0].default_sr",
        "lab-a1 is a member of pool 'Production', whose default_sr applies",
    ),
    # duplicates
    (_set("srs.2.name", "Local storage"), "srs[2].name", "duplicate SR name 'Local storage'"),
    (_set("guests.1.name", "web-1"), "guests[1].name", "duplicate guest name 'web-1'"),
    (_set("servers.1.host_number", 11), "servers[1].host_number", "already the host number"),
    (
        _set("pools", [{"name": "P", "members": ["lab-a1"]}, {"name": "P", "members": ["lab-b1"]}]),
        "pools[1].name",
        "duplicate pool name 'P'",
    ),
    (
        _set("pools", [{"name": "P", "members": ["lab-a1"]}, {"name": "Q", "members": ["lab-a1"]}]),
        "pools[1].members[0]",
        "'lab-a1' is already a member of pool 'P'",
    ),
    (_set("pools.0.members", ["lab-a1", "lab-a1"]), "pools[0].members[1]", "listed twice"),
    (
        _set("guests.1.disks", [{"sr": "Local storage", "size_mib": 8, "dev": "vda"}] * 2),
        "guests[1].disks[1].dev",
        "vda is already used",
    ),
    # subnets
    (
        _set("networks.storage.subnet", "10.240.2.0/33"),
        "networks.storage.subnet",
        "'10.240.2.0/33' is not an IPv4 subnet",
    ),
    (
        _set("networks.storage.subnet", "10.240.2.5/24"),
        "networks.storage.subnet",
        'host bits set; did you mean "10.240.2.0/24"?',
    ),
    (_set("networks.storage.subnet", "10.240.2.0"), "networks.storage.subnet", "no prefix"),
    (_set("networks.storage.subnet", "fd00::/64"), "networks.storage.subnet", "not an IPv4"),
    (_set("networks.storage.subnet", "bogus"), "networks.storage.subnet", "not an IPv4"),
    (_set("networks.storage.subnet", "10.240.2.0/30"), "networks.storage.subnet", "too small"),
    (
        _set("networks.storage.subnet", "10.240.0.0/16"),
        "networks.storage.subnet",
        "10.240.0.0/16 overlaps networks.management.subnet (10.240.1.0/24)",
    ),
    (_set("networks.storage.mtu", 65536), "networks.storage.mtu", "use 576 to 9000"),
    (_set("networks.storage.mtu", "jumbo"), "networks.storage.mtu", "write e.g. mtu = 9000"),
    (_set("servers.0.host_number", 255), "servers[0].host_number", "255 is out of range"),
    (_set("servers.0.host_number", 0), "servers[0].host_number", "use 1 to 254"),
    # management network
    (
        _set("networks.management.management", False),
        "networks",
        "no network has management = true",
    ),
    (
        _set("networks.storage.management", True),
        "networks.storage.management",
        "both say management = true",
    ),
    # names
    (_set("name", "XCL-lab"), "name", "cannot prefix the lab's namespace names"),
    (_set("name", "toolongname"), "name", "use 1-8 lowercase letters"),
    (
        _set("networks", {"management-net": {"subnet": "10.9.0.0/24", "rate_mib_s": 1}}),
        "networks.management-net",
        "cannot name an interface",
    ),
    (_set("servers.0.name", "Lab A1"), "servers[0].name", "server name 'Lab A1' is not usable"),
    (_set("servers.0.name", "sw"), "servers[0].name", "not 'sw'"),
    (_set("guests.0.name", "web 1"), "guests[0].name", "guest name 'web 1' is not usable"),
    (_set("srs.0.name", "a/b"), "srs[0].name", "cannot name a directory"),
    (_set("srs.0.name", " padded"), "srs[0].name", "leading/trailing spaces"),
    (_set("srs.0.servers", []), "srs[0].servers", "empty"),
    # state_dir
    (_set("state_dir", "relative/lab"), "state_dir", "normalised absolute path"),
    (_set("state_dir", "/var/lib/x/../y"), "state_dir", "normalised absolute path"),
    (_set("state_dir", "/var/lib"), "state_dir", "system directory"),
    (_set("state_dir", "/lab"), "state_dir", "system directory"),
    (_set("state_dir", "/var/lib/libvirt/lab"), "state_dir", "overlaps /var/lib/libvirt"),
    (_set("state_dir", "/tmp/" + "x" * 90), "state_dir", "longer than 107 characters"),
    (_set("state_dir", "/tmp/my lab"), "state_dir", "not usable"),
    # other values
    (_set("accel", "fast"), "accel", "'fast' is not known; use one of: auto, kvm, tcg."),
    (_set("guests.0.state", "paused"), "guests[0].state", "use one of: running, halted"),
    (_set("guests.0.folder", "Web"), "guests[0].folder", "start it with '/'"),
    (_set("guests.0.memory_mib", 1), "guests[0].memory_mib", "out of range"),
    (_set("guests.0.disks.0.size_mib", 2), "guests[0].disks[0].size_mib", "use 4 to"),
    (_set("guests.0.disks.0.format", "vmdk"), "guests[0].disks[0].format", "qcow2, raw"),
    (_set("guests.0.disks.0.dev", "sda"), "guests[0].disks[0].dev", "not a virtio disk name"),
    (_set("srs.3.size_mib", 0), "srs[3].size_mib", "out of range"),
    (_set("guests.0.os", "windows"), "guests[0].os", "use one of: linux, none"),
    (_set("guests.0.dirty_mib", 64), "guests[0].dirty_mib", "use 0 to 32"),
    (_set("guests.0.disks.0.size_mib", 8), "guests[0].disks", "at least 9 MiB"),
    (_set("guests.0.memory_mib", 64), "guests[0].memory_mib", "at least 96"),
    (lambda d: d.update(ssh=True) or d["servers"][0].update(host_number=254), "ssh",
     "give that server another host_number"),
    (_set("ssh", "yes"), "ssh", "true or false"),
    (_set("guests.1.disks.0.data_mib", 300), "guests[1].disks[0].data_mib", "use 4 to 256"),
    (_set("guests.1.disks.1.data_mib", 16), "guests[1].disks", "put the data on another disk"),
]


@pytest.mark.parametrize(("change", "key", "text"), ERROR_CASES)
def test_config_errors(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], key: str, text: str
) -> None:
    error = config_error(tmp_path, change)
    assert error.key == key
    assert str(error).startswith(f"lab.toml: {key}: ")
    assert text in str(error)
    # Every message says what to do about it.
    assert str(error).rstrip().endswith((".", "?"))


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(LabConfigError) as info:
        load_lab_config(write(tmp_path, 'name = "xcl\n'))
    assert str(info.value).startswith("lab.toml: not valid TOML: ")
    assert "line 1" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabConfigError, match=r"^nope\.toml: file not found"):
        load_lab_config(tmp_path / "nope.toml")


# ---- the CLI entry (nothing is built: these stop before any system change) ---------------


def test_cli_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    out, err = io.StringIO(), io.StringIO()
    assert run_lab_command("up", None, out=out, err=err) == 2
    assert err.getvalue().strip() == (
        "The lab needs root: run it as root (sudo xencenter-lite lab up)."
    )
    assert out.getvalue() == ""


def test_cli_bad_config_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    data = default_data()
    data["servers"][2]["name"] = "lab-a1"
    out, err = io.StringIO(), io.StringIO()
    assert run_lab_command("up", write(tmp_path, data), out=out, err=err) == 2
    assert "servers[2].name: duplicate server name 'lab-a1'" in err.getvalue()
    assert out.getvalue() == ""


def test_cli_unknown_action() -> None:
    err = io.StringIO()
    assert run_lab_command("sideways", None, out=io.StringIO(), err=err) == 2
    assert "up, down, status" in err.getvalue()


def test_lab_code_never_imports_libvirt() -> None:
    for source in LAB_PACKAGE.glob("*.py"):
        text = source.read_text()
        assert "import libvirt" not in text, source
        assert "from libvirt" not in text, source
        assert "shell=True" not in text, source


def test_the_bench_lab_loads_apart_from_the_others(config: LabConfig) -> None:
    bench = load_lab_config(LAB_PACKAGE.parents[1] / "bench" / "lab-bench.toml")
    assert bench.name != config.name and bench.state_dir != config.state_dir
    assert {n.name: n.rate_mib_s for n in bench.networks} == {"management": 10, "storage": 40}
    big = next(g for g in bench.guests if g.name == "big-1")
    assert [d.data_mib for d in big.disks] == [384, 4]


def _only_child(pid: int) -> int:
    """The one child process `pid` has started (waiting up to 10 s for it)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + 10
    while not children.read_text().split() and time.monotonic() < deadline:
        time.sleep(0.01)
    (child,) = (int(c) for c in children.read_text().split())
    return child


def test_a_libvirtd_from_before_the_reaper_is_told_apart() -> None:
    """A lab brought up before libvirtd ran under tini is not healthy: its migrations would
    wait on this machine's PID 1 for every stopped QEMU. Only a process under tini counts."""
    from xencenter_lite.lab import daemon

    proc = subprocess.Popen([daemon.TINI, "-s", "--", "sleep", "30"])
    try:
        child = _only_child(proc.pid)
        assert daemon.under_reaper(child)
        assert not daemon.under_reaper(os.getpid())
        assert not daemon.under_reaper(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    assert not daemon.under_reaper(child)  # gone


def test_the_servers_cpu_group_holds_what_its_processes_start_and_goes_when_empty() -> None:
    """The lab's CPU group: made idle (or, on older kernels, with the least weight), a
    process put in it brings along the processes it starts, and removing it waits until
    they are gone."""
    from xencenter_lite.lab import system

    name = f"xencenter-lite-unit-{os.getpid()}"
    group = system.idle_cpu_group(name)
    assert group is not None, "this machine has no CPU controller for the lab's servers"
    try:
        assert yields_the_cpu(group)
        proc = subprocess.Popen(
            ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec sh -c "sleep 30 & wait"',
             str(group)]
        )
        try:
            child = _only_child(proc.pid)
            assert system.in_cpu_group(proc.pid, name)
            assert system.in_cpu_group(child, name)
            assert not system.in_cpu_group(os.getpid(), name)
            system.remove_cpu_group(name)
            assert group.exists()  # still has processes
        finally:
            proc.kill()
            os.kill(child, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + 10
        while (group / "cgroup.procs").read_text().split() and time.monotonic() < deadline:
            time.sleep(0.01)
        system.remove_cpu_group(name)
        assert not group.exists()
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()
