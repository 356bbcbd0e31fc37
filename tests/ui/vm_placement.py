"""Put a lab VM where a console test expects it: earlier tests may have moved it."""

from __future__ import annotations

from typing import Any

from tests.labtools import vm_named
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import VM
from xencenter_lite.core.plan import MigrationRequest


def place(engine: Any, run: Any, name: str, server: str, sr: str | None = None) -> VM:
    vm = vm_named(engine, name)
    if vm.server != server:
        (job,) = engine.migrate([MigrationRequest(vm.key, server, sr=sr)])
        run(engine.wait([job]))
        assert job.state is JobState.DONE, (job.error, job.error_details)
        vm = vm_named(engine, name)
    return vm
