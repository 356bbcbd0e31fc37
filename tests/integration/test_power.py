"""The power operations: on libvirt's test driver (every operation, the checks, cancel), and
on the lab from the command line with a virt-install VM whose guest ignores the request to
shut down (SeaBIOS waits: no OS), so the timeout and Force Shut Down are real."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.labtools import cli, remove_vm, virsh, virt_install, where_defined
from tests.testdriver import driver_domain
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.power import PowerAction
from xencenter_lite.engine import Engine


# ---- the test driver --------------------------------------------------------------------------
@pytest.fixture
def driver_vm(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with driver_domain("pw") as (tag, uuid):
        inventory = tmp_path / "inventory.toml"
        inventory.write_text(f"""
[[servers]]
name = "td"
uri = "test:///default?power={tag}"
[servers.networks]
storage = "192.0.2.1"
""")
        yield inventory, uuid


def test_each_power_operation_ends_in_its_state_and_a_wrong_one_is_refused(
        driver_vm: tuple[Path, str], run: Any, tmp_path: Path) -> None:
    inventory, uuid = driver_vm
    engine = Engine(load_inventory(inventory), state_dir=tmp_path / "state")

    async def scenario() -> list[tuple[str, str, VmState | None]]:
        await engine.start(watch=False)
        seen = []
        try:
            for action in (PowerAction.SUSPEND, PowerAction.RESUME, PowerAction.SHUTDOWN,
                           PowerAction.RESUME, PowerAction.START, PowerAction.REBOOT,
                           PowerAction.FORCE_SHUTDOWN):
                job = engine.power(("td", uuid), action, timeout=5)
                await engine.wait([job])
                vm = engine.snapshot().vm(("td", uuid))
                seen.append((action.value, job.state.value, vm.state if vm else None))
                if action is PowerAction.RESUME and job.state is JobState.FAILED:
                    assert "is halted; Resume needs it paused" in (job.error or "")
        finally:
            await engine.close()
        return seen

    assert run(scenario(), 60) == [
        ("suspend", "done", VmState.PAUSED),
        ("resume", "done", VmState.RUNNING),
        ("shutdown", "done", VmState.HALTED),
        ("resume", "failed", VmState.HALTED),  # refused: nothing done
        ("start", "done", VmState.RUNNING),
        ("reboot", "done", VmState.RUNNING),
        ("force-shutdown", "done", VmState.HALTED),
    ]


# ---- the lab, from the command line ------------------------------------------------------------
@pytest.fixture
def lab_vm(lab_inventory: Path) -> Iterator[dict[str, str]]:
    uris = {s.name: s.uri for s in load_inventory(lab_inventory).servers}
    remove_vm(uris["lab-b1"], "pw-lab")
    virsh(uris["lab-b1"], "vol-create-as", "Local storage", "pw-lab.qcow2", "16M", "--format",
          "qcow2")
    virt_install(uris["lab-b1"], "pw-lab", "vol=Local storage/pw-lab.qcow2", memory_mib=32)
    yield uris
    for uri in uris.values():
        remove_vm(uri, "pw-lab")


@pytest.mark.lab
def test_the_cli_runs_each_operation_and_a_guest_that_ignores_shutdown_times_out(
        lab_inventory: Path, lab_vm: dict[str, str]) -> None:
    def power(*args: str) -> tuple[int, Any]:
        done = cli(*args, "--json", inventory=lab_inventory)
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr

    code, out = power("shutdown", "pw-lab", "--timeout", "3")
    assert code == 1, out
    assert "did not shut down within 3 s" in out[0]["error"]
    assert "Force Shut Down" in out[0]["error"]
    assert where_defined(lab_vm, "pw-lab") == [("lab-b1", "running")]

    code, out = power("suspend", "pw-lab")
    assert code == 0 and out[0]["ok"], out
    assert where_defined(lab_vm, "pw-lab") == [("lab-b1", "paused")]
    code, out = power("resume", "pw-lab")
    assert code == 0, out
    code, out = power("resume", "pw-lab")  # it runs: refused before anything is done
    assert code == 2 and [p["code"] for p in out["problems"]] == ["VM_STATE"], out
    code, out = power("reboot", "pw-lab")
    assert code == 0, out
    code, out = power("shutdown", "pw-lab", "--force")
    assert code == 0, out
    assert where_defined(lab_vm, "pw-lab") == [("lab-b1", "shut off")]
    code, out = power("start", "pw-lab")
    assert code == 0, out
    assert where_defined(lab_vm, "pw-lab") == [("lab-b1", "running")]
    bad = cli("shutdown", "pw-lab", "--timeout", "0", inventory=lab_inventory)
    assert bad.returncode == 2 and "--timeout must be a positive" in bad.stderr
