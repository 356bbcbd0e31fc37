"""The undo log on disk: what a job wrote down outlives its process, and is taken over by
the next engine only once the engine that wrote it has ended."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from xencenter_lite.core.cleanup import Cleanup, CleanupKind
from xencenter_lite.engine.undo import PendingStore, UndoLog, state_dir_for


def entry(name: str = "db-1-vda.qcow2") -> Cleanup:
    return Cleanup(CleanupKind.VOLUME, "lab-b1", "host-b1", "Migrating 'db-1' to 'lab-b1'",
                   vm_uuid="u-db-1", vm_name="db-1", vm_home="lab-a1", vm_home_uuid="host-a1",
                   sr="Local storage", volume=name)


def test_a_change_is_on_disk_before_it_is_made(tmp_path: Path) -> None:
    store = PendingStore(tmp_path)
    store.open()
    undo = UndoLog(store)
    made = undo.record(entry())
    on_disk = json.loads((tmp_path / f"{store.owner}.json").read_text())["entries"]
    assert [e["volume"] for e in on_disk] == ["db-1-vda.qcow2"]
    undo.amend(made, path="/sr/db-1-vda.qcow2")
    on_disk = json.loads((tmp_path / f"{store.owner}.json").read_text())["entries"]
    assert on_disk[0]["path"] == "/sr/db-1-vda.qcow2" and on_disk[0]["id"] == made.id
    undo.keep(undo.entries)
    assert json.loads((tmp_path / f"{store.owner}.json").read_text())["entries"] == []
    store.close()
    assert list(tmp_path.iterdir()) == []  # nothing pending: nothing left behind


def test_a_running_engines_entries_are_its_own(tmp_path: Path) -> None:
    first, second = PendingStore(tmp_path), PendingStore(tmp_path)
    first.open()
    first.add(entry())
    second.open()
    assert second.entries() == []  # the first engine still runs
    first.close()  # ends with the entry still pending
    adopted = second.adopt()
    assert [e.volume for e in adopted] == ["db-1-vda.qcow2"]
    assert [e.volume for e in second.entries()] == ["db-1-vda.qcow2"]
    assert not (tmp_path / f"{first.owner}.json").exists()
    third = PendingStore(tmp_path)
    third.open()
    assert third.entries() == []  # taken over once, by one engine
    second.close()
    third.close()


KILLED = """
import os, sys
from pathlib import Path
from xencenter_lite.core.cleanup import Cleanup, CleanupKind
from xencenter_lite.engine.undo import PendingStore
store = PendingStore(Path(sys.argv[1]))
store.open()
store.add(Cleanup(CleanupKind.VOLUME, "lab-b1", "host-b1", "Migrating", sr="Local storage",
                  volume="killed.qcow2"))
os._exit(9)  # as a process killed mid-job: no clean-up, no close
"""


def test_the_entries_of_a_killed_process_are_adopted(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], timeout=60)
    assert child.returncode == 9
    store = PendingStore(tmp_path)
    store.open()
    assert [e.volume for e in store.entries()] == ["killed.qcow2"]
    store.close()


def test_each_inventory_has_its_own_state_directory(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    assert state_dir_for(a) != state_dir_for(b)
    assert state_dir_for(a) == state_dir_for(tmp_path / "." / "a.toml")
    assert state_dir_for(a).parent.name == "xencenter-lite"
