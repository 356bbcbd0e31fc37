"""A VM whose CPU the destination's hypervisor cannot run is refused before anything moves,
naming the features it lacks; one it can run passes. Asked of the lab's real libvirt
(virConnectCompareHypervisorCPU).

The lab's servers are alike (the same QEMU, TCG), so no VM running on one has a CPU another
lacks. The refused VM is a halted one with a CPU TCG cannot give (Icelake-Server): sent
directly it would be started paused, so it must be able to run where it goes, and the check
asks the destination exactly as it does for a running VM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.labtools import cli, domains, remove_vm, virsh, vm_named
from xencenter_lite.core.checks import blocking
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import DataPath, MigrationRequest
from xencenter_lite.engine import Engine

NAME = "cpu-1"
LOCAL = "Local storage"
# check='full': libvirt holds the guest to this CPU (with check='none', as libvirt writes a
# halted VM's custom CPU by default, QEMU drops what the host lacks and nothing is asked).
ICELAKE = ("<cpu mode='custom' match='exact' check='full'><model fallback='forbid'>"
           "Icelake-Server</model></cpu>")


@pytest.fixture
def icelake_vm(engine: Engine, run: Any, tmp_path: Path) -> Iterator[str]:
    uris = {n: s.uri for n, s in engine.snapshot().servers.items()}

    def clean() -> None:
        for uri in uris.values():
            remove_vm(uri, NAME)

    clean()
    # A disk on the server's own SR: a halted VM with one is what goes directly.
    virsh(uris["lab-a1"], "vol-create-as", LOCAL, f"{NAME}.raw", "1M", "--format", "raw")
    disk = virsh(uris["lab-a1"], "vol-path", "--pool", LOCAL, f"{NAME}.raw").strip()
    xml = tmp_path / f"{NAME}.xml"
    xml.write_text(f"<domain type='qemu'><name>{NAME}</name><memory unit='MiB'>64</memory>"
                   "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
                   f"{ICELAKE}<devices><disk type='file' device='disk'>"
                   f"<driver name='qemu' type='raw'/><source file='{disk}'/>"
                   "<target dev='vda' bus='virtio'/></disk></devices></domain>")
    virsh(uris["lab-a1"], "define", str(xml))
    run(engine.refresh("lab-a1"))
    try:
        yield NAME
    finally:
        clean()
        run(engine.refresh())


def test_a_cpu_the_destination_lacks_is_refused_naming_the_features(
        engine: Engine, run: Any, lab_inventory: Path, icelake_vm: str) -> None:
    vm = vm_named(engine, icelake_vm)
    assert "Icelake-Server" in vm.cpu and vm.virt_type == "qemu"
    request = MigrationRequest(vm.key, "lab-a2", sr=LOCAL, data_path=DataPath.DIRECT)
    _, problems = run(engine.precheck([request]))
    (refused,) = [p for p in blocking(problems) if p.code == "CPU_INCOMPATIBLE"]
    assert "'lab-a2' cannot run the CPU of 'cpu-1' (Icelake-Server): it lacks" in \
        refused.message
    assert "avx512f" in refused.message  # libvirt's own list of what TCG cannot give
    assert vm.cpu_key in engine.snapshot().servers["lab-a2"].cpu_refusals

    # The job refuses too, before anything is made; the VM stays where it was.
    (job,) = engine.migrate([request])
    run(engine.wait([job]), timeout=60)
    assert job.state is JobState.FAILED and "avx512f" in (job.error or ""), job.error
    assert vm_named(engine, icelake_vm).server == "lab-a1"
    assert icelake_vm not in domains(engine.snapshot().servers["lab-a2"].uri)

    # The CLI says it and exits non-zero.
    out = cli("precheck", icelake_vm, "--to", "lab-a2", "--sr", LOCAL, "--via", "direct",
              inventory=lab_inventory)
    assert out.returncode != 0, out.stdout
    assert "cannot run the CPU of 'cpu-1' (Icelake-Server)" in out.stdout + out.stderr

    # Its disks through the volume streams, nothing runs: no CPU question.
    plans, problems = run(engine.precheck([MigrationRequest(
        vm.key, "lab-a2", sr=LOCAL, data_path=DataPath.STREAM)]))
    assert plans[0].data_path is DataPath.STREAM
    assert "CPU_INCOMPATIBLE" not in [p.code for p in problems]


def test_a_cpu_the_destination_has_passes(engine: Engine, run: Any) -> None:
    vm = vm_named(engine, "web-1")
    assert vm.state is VmState.RUNNING and "<model" in vm.cpu  # its live CPU definition
    dest = "lab-a2" if vm.server != "lab-a2" else "lab-a1"
    _, problems = run(engine.precheck([MigrationRequest(vm.key, dest)]))
    assert "CPU_INCOMPATIBLE" not in [p.code for p in problems]
    assert engine.snapshot().servers[dest].cpu_refusals.get(vm.cpu_key) is None
