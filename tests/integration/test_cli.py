"""The command line against the lab: listing, refusals before anything moves, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.labtools import bare_domain_xml, cli, cli_argv, virsh, vm_named
from xencenter_lite.engine import Engine


def _codes(result: Any) -> set[str]:
    return {p["code"] for p in json.loads(result.stdout)["problems"] if p["severity"] == "error"}


def _edited_inventory(src: Path, tmp_path: Path, pattern: str, new: str) -> Path:
    text, n = re.subn(pattern, new, src.read_text(), count=1)
    assert n == 1, f"{pattern!r} not in the lab's inventory"
    out = tmp_path / "inventory.toml"
    out.write_text(text)
    return out


def test_list_json_describes_pools_servers_srs_and_vms(lab_inventory: Path) -> None:
    result = cli("list", "--json", inventory=lab_inventory)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {p["name"] for p in data["pools"]} == {"Production"}
    servers = {s["name"]: s for s in data["servers"]}
    assert set(servers) == {"lab-a1", "lab-a2", "lab-b1"}
    assert all(s["connected"] and s["memory_free"] > 0 for s in servers.values())
    assert set(servers["lab-a1"]["networks"]) == {"management", "storage"}
    shared = [s for s in data["srs"] if s["name"] == "Shared storage"]
    assert len(shared) == 1 and shared[0]["shared"] and shared[0]["pool"] == "Production"
    small = next(s for s in data["srs"] if s["name"] == "Small storage")
    assert small["server"] == "lab-b1" and small["capacity"] <= 64 * 1024 * 1024
    vms = {v["name"]: v for v in data["vms"]}
    assert {"web-1", "db-1", "app-1", "build-1"} <= set(vms)
    assert vms["build-1"]["state"] == "halted"
    assert all(d["capacity"] > 0 and d["path"] and d["sr"] for d in vms["db-1"]["disks"])


def test_refuses_migrating_to_the_current_server(lab_inventory: Path, engine: Engine) -> None:
    vm = vm_named(engine, "web-1")
    result = cli("precheck", "web-1", "--to", vm.server, "--json", inventory=lab_inventory)
    assert result.returncode == 2
    assert "SAME_SERVER" in _codes(result)


def test_a_saved_vm_is_refused_through_the_console_and_keeps_its_state(
        lab_inventory: Path, engine: Engine, tmp_path: Path) -> None:
    """A halted VM moves (tests/integration/test_halted.py); one with a saved state moves
    only directly: through the console's streams it would lose it, and says so."""
    uri = engine.snapshot().servers["lab-a2"].uri
    xml = bare_domain_xml(tmp_path, "saved-1")
    virsh(uri, "define", str(xml))
    try:
        virsh(uri, "start", "saved-1")
        virsh(uri, "managedsave", "saved-1")
        result = cli("migrate", "saved-1", "--to", "lab-b1", "--via", "stream", "--json",
                     inventory=lab_inventory)
        assert result.returncode == 2
        assert _codes(result) == {"VM_HAS_SAVED_STATE"}
        assert "saved-1" in virsh(uri, "list", "--all", "--name").split()
        assert "yes" in virsh(uri, "dominfo", "saved-1").split("Managed save:", 1)[1][:12]
    finally:
        subprocess.run(["virsh", "-c", uri, "undefine", "saved-1", "--managed-save"],
                       capture_output=True)


def test_refuses_when_the_sr_is_too_small(lab_inventory: Path, engine: Engine) -> None:
    vm = vm_named(engine, "web-1")
    assert vm.server != "lab-b1"
    result = cli("migrate", "web-1", "--to", "lab-b1", "--sr", "Small storage", "--json",
                 inventory=lab_inventory)
    assert result.returncode == 2
    assert _codes(result) == {"NOT_ENOUGH_SPACE"}
    assert vm_named(engine, "web-1").server == vm.server  # nothing moved


def test_refuses_when_the_destination_lacks_memory(lab_inventory: Path, tmp_path: Path,
                                                   engine: Engine) -> None:
    inv = _edited_inventory(lab_inventory, tmp_path,
                            r'(name = "lab-b1"\n(?:.*\n)*?)vm_memory_limit_mib = \d+',
                            r"\1vm_memory_limit_mib = 64")
    vm = vm_named(engine, "web-1")
    result = cli("migrate", "web-1", "--to", "lab-b1", "--json", inventory=inv)
    assert result.returncode == 2
    assert "NOT_ENOUGH_MEMORY" in _codes(result)
    assert vm_named(engine, "web-1").server == vm.server


def test_refuses_storage_migration_while_the_pool_has_ha(lab_inventory: Path, tmp_path: Path,
                                                         engine: Engine) -> None:
    inv = _edited_inventory(lab_inventory, tmp_path, "ha_enabled = false", "ha_enabled = true")
    web = vm_named(engine, "web-1")
    assert web.server in ("lab-a1", "lab-a2")
    result = cli("precheck", "web-1", "--to", "lab-b1", "--json", inventory=inv)
    assert result.returncode == 2
    assert "HA_ENABLED" in _codes(result)
    assert "disable HA first" in result.stdout
    # A memory-only move inside the pool is still fine with HA on.
    other = "lab-a2" if web.server == "lab-a1" else "lab-a1"
    result = cli("precheck", "web-1", "--to", other, "--json", inventory=inv)
    assert result.returncode == 0, result.stdout


def test_refuses_a_vm_with_a_pci_device(lab_inventory: Path, engine: Engine,
                                        tmp_path: Path) -> None:
    uri = engine.snapshot().servers["lab-a2"].uri
    xml = tmp_path / "pci.xml"
    xml.write_text("""<domain type='qemu'><name>pci-1</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
      <hostdev mode='subsystem' type='pci' managed='yes'><source>
      <address domain='0x0000' bus='0x00' slot='0x1f' function='0x3'/></source></hostdev>
      </devices></domain>""")
    virsh(uri, "define", str(xml))
    try:
        result = cli("precheck", "pci-1", "--to", "lab-b1", "--json", inventory=lab_inventory)
        assert result.returncode == 2
        assert _codes(result) == {"PCI_PASSTHROUGH"}
    finally:
        virsh(uri, "undefine", "pci-1")


@pytest.mark.parametrize(("args", "expected"), [
    (["migrate", "no-such-vm", "--to", "lab-b1"], "no VM named 'no-such-vm'"),
    (["migrate", "web-1", "--to", "nowhere"], "no server named 'nowhere'"),
    (["migrate", "web-1", "--to", "lab-b1", "--disk", "vda"], "is not DEV=SR"),
    (["migrate", "web-1", "--to", "lab-b1", "--network", "wifi"], "no network named 'wifi'"),
    (["move-disk", "app-1", "vdz", "--sr", "Fast storage"], "has no disk 'vdz'"),
    (["migrate", "web-1"], "--to"),
    (["maintenance", "enter", "nowhere"], "no server named 'nowhere'"),
    (["maintenance", "enter", "lab-b1", "--send", "app-1"], "is not VM=SERVER"),
    (["maintenance", "enter", "lab-b1", "--leave", "web-9"], "runs no VM named 'web-9'"),
    (["maintenance", "enter", "lab-b1", "--parallel", "0"], "--parallel must be a positive"),
    (["maintenance", "exit", "nowhere"], "no server named 'nowhere'"),
    (["migrate", "web-1", "--to", "lab-b1", "--max-downtime", "5"], "give 10 to 60000 ms"),
    (["migrate", "web-1", "--to", "lab-b1", "--on-timeout", "suspend"], "needs --timeout S"),
    (["migrate", "web-1", "--to", "lab-b1", "--compress", "--parallel", "4"], "choose one"),
    (["migrate", "web-1", "--to", "lab-b1", "--policy", "fast"], "invalid choice: 'fast'"),
])
def test_bad_input_exits_2_with_a_message(lab_inventory: Path, args: list[str],
                                           expected: str) -> None:
    result = cli(*args, inventory=lab_inventory)
    assert result.returncode == 2
    assert expected in result.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(lab_inventory: Path) -> None:
    """`list | head -1`: the reader is gone before the output comes; no traceback, exit 1."""
    with subprocess.Popen(cli_argv("list", inventory=lab_inventory),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 1, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_cli_migrates_and_reports_json(lab_inventory: Path, engine: Engine, run: Any) -> None:
    vm = vm_named(engine, "web-1")
    dest = "lab-a2" if vm.server == "lab-a1" else "lab-a1"
    result = cli("migrate", "web-1", "--to", dest, "--json", inventory=lab_inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    (res,) = json.loads(result.stdout)
    assert res["vm"] == "web-1" and res["from"] == vm.server and res["to"] == dest
    assert res["ok"] is True and res["error"] is None
    assert res["seconds"] > 0 and res["bytes"] > 0
    snap = run(engine.refresh())
    assert next(v for v in snap.vms if v.name == "web-1").server == dest


def test_move_disk_refuses_the_small_sr(lab_inventory: Path, engine: Engine) -> None:
    app = vm_named(engine, "app-1")
    assert app.server == "lab-b1"
    result = cli("move-disk", "app-1", "vda", "--sr", "Small storage", inventory=lab_inventory)
    assert result.returncode == 2
    assert re.search(r"Not enough space: .* required", result.stdout)


def test_precheck_shows_the_migration_settings_and_the_post_copy_risk(
        lab_inventory: Path, engine: Engine) -> None:
    web = vm_named(engine, "web-1")
    other = "lab-a2" if web.server == "lab-a1" else "lab-a1"
    result = cli("precheck", "web-1", "--to", other, inventory=lab_inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "settings: policy auto-converge, max downtime 300 ms" in result.stdout
    assert "lost on both servers" not in result.stdout
    result = cli("precheck", "web-1", "--to", other, "--policy", "post-copy",
                 "--max-downtime", "200", "--json", inventory=lab_inventory)
    (plan,) = json.loads(result.stdout)["plans"]
    assert plan["policy"]["policy"] == "post-copy" and plan["policy"]["max_downtime_ms"] == 200
    result = cli("precheck", "web-1", "--to", other, "--policy", "post-copy",
                 inventory=lab_inventory)
    assert "warning: Post-copy runs the VM on the destination" in result.stdout
