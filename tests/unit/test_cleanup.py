"""The undo log's decisions: what is removed, restored or kept, from what the servers say now.

Each case is a situation a failed (or half-finished) job can leave, and the one answer
that cannot lose a VM or a disk."""

from __future__ import annotations

import pytest

from xencenter_lite.core.cleanup import (
    Cleanup,
    CleanupKind,
    Facts,
    Place,
    Verdict,
    decide,
    finishing_message,
)
from xencenter_lite.core.model import VmState

SRC, DEST = "host-uuid-a1", "host-uuid-b1"
RUNNING, PAUSED = VmState.RUNNING, VmState.PAUSED
UP_DEST = Place(True, DEST)  # the destination answers; the VM is not there
GONE = None


def volume(**kw: object) -> Cleanup:
    """A volume a migration of db-1 from lab-a1 created on lab-b1."""
    values: dict[str, object] = dict(
        kind=CleanupKind.VOLUME, server="lab-b1", host_uuid=DEST, job="Migrating 'db-1'",
        vm_uuid="u-db-1", vm_name="db-1", vm_home="lab-a1", vm_home_uuid=SRC,
        sr="Local storage", volume="db-1-vda.qcow2", path="/sr/db-1-vda.qcow2")
    values.update(kw)
    return Cleanup(**values)  # type: ignore[arg-type]


def at_home(state: VmState | None = RUNNING, job: bool = False) -> Place:
    return Place(True, SRC, state, job)


def verdict(c: Cleanup, facts: Facts) -> Verdict:
    return decide(c, facts).verdict


# ---- a volume made on the destination -------------------------------------------------------
@pytest.mark.parametrize("facts, expected, why", [
    (Facts(UP_DEST, at_home()), Verdict.ACT, "the VM runs on its source: the copy is ours"),
    (Facts(Place(False), at_home()), Verdict.WAIT, "the destination cannot be asked"),
    (Facts(Place(True, "someone-else"), at_home()), Verdict.WAIT,
     "the name now reaches another host: nothing is removed there"),
    (Facts(UP_DEST, at_home(), exists=False), Verdict.DROP, "already gone"),
    (Facts(UP_DEST, at_home(job=True)), Verdict.WAIT, "the source still migrates the VM"),
    (Facts(UP_DEST, Place(False)), Verdict.WAIT, "where the VM runs is not known"),
    (Facts(UP_DEST, at_home(GONE)), Verdict.WAIT, "the VM is on neither server"),
    (Facts(Place(True, DEST, RUNNING), at_home(GONE), in_use=True), Verdict.DROP,
     "the migration succeeded after all: the VM runs on the copy"),
    (Facts(Place(True, DEST, PAUSED, job=True), at_home(job=True), in_use=True), Verdict.WAIT,
     "an incoming migration uses it"),
    (Facts(UP_DEST, at_home(), in_use=True), Verdict.WAIT, "another domain uses it"),
    (Facts(UP_DEST, Place(True, "another-host", RUNNING)), Verdict.WAIT,
     "the source's name now reaches another host: where the VM is, is not known"),
])
def test_a_copy_target_volume(facts: Facts, expected: Verdict, why: str) -> None:
    assert verdict(volume(), facts) is expected, why


def test_nothing_is_undone_when_the_source_is_the_destination_itself() -> None:
    c = volume(vm_home_uuid=DEST)
    assert verdict(c, Facts(UP_DEST, Place(True, DEST, RUNNING))) is Verdict.DROP


def test_a_probe_volume_is_removed_unless_used() -> None:
    probe = volume(vm_uuid="", vm_name="", vm_home="", vm_home_uuid="", job="probe")
    assert verdict(probe, Facts(UP_DEST)) is Verdict.ACT
    assert verdict(probe, Facts(UP_DEST, in_use=True)) is Verdict.WAIT


# ---- the old disk on the source -------------------------------------------------------------
def old_disk() -> Cleanup:
    return Cleanup(CleanupKind.OLD_DISK, "lab-a1", SRC, "Migrating 'db-1'", vm_uuid="u-db-1",
                   vm_name="db-1", vm_home="lab-b1", vm_home_uuid=DEST, path="/a1/db-1.qcow2")


@pytest.mark.parametrize("here, home, in_use, expected", [
    (Place(True, SRC), Place(True, DEST, RUNNING), False, Verdict.ACT),
    (Place(True, SRC, RUNNING), Place(True, DEST), False, Verdict.DROP),  # the move failed
    (Place(True, SRC), Place(True, DEST, RUNNING, job=True), False, Verdict.WAIT),
    (Place(True, SRC), Place(False), False, Verdict.WAIT),
    (Place(True, SRC), Place(True, DEST), False, Verdict.WAIT),  # the VM is nowhere
    (Place(True, SRC), Place(True, DEST, RUNNING), True, Verdict.DROP),  # someone uses it
])
def test_the_old_disk(here: Place, home: Place, in_use: bool, expected: Verdict) -> None:
    assert verdict(old_disk(), Facts(here, home, in_use=in_use)) is expected


# ---- the destination's half of the migration ------------------------------------------------
def incoming() -> Cleanup:
    return Cleanup(CleanupKind.INCOMING_DOMAIN, "lab-b1", DEST, "Migrating 'db-1'",
                   vm_uuid="u-db-1", vm_name="db-1", vm_home="lab-a1", vm_home_uuid=SRC)


def test_an_incoming_domain_goes_only_once_the_vm_is_proven_at_home() -> None:
    c = incoming()
    assert verdict(c, Facts(Place(True, DEST, PAUSED), at_home())) is Verdict.ACT
    assert verdict(c, Facts(Place(True, DEST, PAUSED), at_home(job=True))) is Verdict.WAIT
    assert verdict(c, Facts(Place(True, DEST, PAUSED), Place(False))) is Verdict.WAIT
    assert verdict(c, Facts(Place(True, DEST), at_home())) is Verdict.DROP
    both = decide(c, Facts(Place(True, DEST, RUNNING), at_home()))
    assert both.verdict is Verdict.WAIT and "runs on both" in both.reason
    # The migration ended after all: the "incomplete copy" is the VM.
    moved = decide(c, Facts(Place(True, DEST, RUNNING), at_home(GONE)))
    assert moved.verdict is Verdict.DROP and "is on 'lab-b1'" in moved.reason
    assert verdict(c, Facts(Place(True, DEST, RUNNING), Place(False))) is Verdict.WAIT
    # A paused or halted VM arrives as it was: only there now, it is the VM, not a copy.
    for state in (PAUSED, VmState.HALTED):
        assert verdict(c, Facts(Place(True, DEST, state), at_home(GONE))) is Verdict.DROP


def test_a_vm_started_paused_to_move_it_is_turned_off_only_while_paused() -> None:
    c = Cleanup(CleanupKind.STARTED_PAUSED, "lab-b1", DEST, "Migrating 'db-1'",
                vm_uuid="u-db-1", vm_name="db-1")
    assert verdict(c, Facts(Place(True, DEST, PAUSED))) is Verdict.ACT
    assert verdict(c, Facts(Place(True, DEST, PAUSED, job=True))) is Verdict.WAIT
    assert verdict(c, Facts(Place(False))) is Verdict.WAIT
    # Moved on, turned off already, or resumed by someone: not the job's to touch.
    for state in (GONE, VmState.HALTED, RUNNING):
        assert verdict(c, Facts(Place(True, DEST, state), exists=state is not None)) \
            is Verdict.DROP
    assert verdict(c, Facts(Place(True, "another-host", PAUSED))) is Verdict.WAIT


def test_the_same_host_under_two_names_is_never_touched() -> None:
    """The defect that destroyed VMs: the 'destination' was the source under another name;
    its 'incoming' domain is the VM itself."""
    same = Cleanup(CleanupKind.INCOMING_DOMAIN, "lab-a1-again", SRC, "Migrating 'db-1'",
                   vm_uuid="u-db-1", vm_name="db-1", vm_home="lab-a1", vm_home_uuid=SRC)
    facts = Facts(Place(True, SRC, RUNNING), Place(True, SRC, RUNNING))
    assert verdict(same, facts) is Verdict.DROP
    # A volume the job made there is its own: removed while unused, never once in use.
    made = volume(host_uuid=SRC, server="lab-a1-again")
    assert verdict(made, facts) is Verdict.ACT
    assert verdict(made, Facts(facts.here, facts.home, in_use=True)) is Verdict.DROP


# ---- memory given back ------------------------------------------------------------------------
def balloon() -> Cleanup:
    return Cleanup(CleanupKind.BALLOON, "lab-b1", DEST, "Migrating 'db-1'", vm_uuid="u-db-1",
                   vm_name="db-1", vm_home="lab-a1", vm_home_uuid=SRC, target_vm="u-other",
                   size=512)


def test_a_squeezed_vm_gets_its_memory_back_only_if_the_migration_failed() -> None:
    assert verdict(balloon(), Facts(UP_DEST, at_home())) is Verdict.ACT
    assert verdict(balloon(), Facts(Place(True, DEST, RUNNING), at_home(GONE))) is Verdict.DROP
    assert verdict(balloon(), Facts(UP_DEST, at_home(), exists=False)) is Verdict.DROP
    assert verdict(balloon(), Facts(UP_DEST, Place(False))) is Verdict.WAIT


# ---- a disk move ------------------------------------------------------------------------------
def disk_move() -> Cleanup:
    return Cleanup(CleanupKind.DISK_MOVE, "lab-b1", DEST, "Moving disk vda", vm_uuid="u-app",
                   vm_name="app-1", dev="vda", old_path="/local/app.qcow2",
                   new_path="/fast/app.qcow2", fmt="qcow2")


HERE = Place(True, DEST, RUNNING)


@pytest.mark.parametrize("live, persistent, remove, repoint", [
    ("/fast/app.qcow2", "/fast/app.qcow2", "/local/app.qcow2", ""),
    ("/fast/app.qcow2", "/local/app.qcow2", "/local/app.qcow2", "/fast/app.qcow2"),
    ("/fast/app.qcow2", None, "/local/app.qcow2", ""),
    ("/local/app.qcow2", "/local/app.qcow2", "/fast/app.qcow2", ""),
    (None, "/fast/app.qcow2", "/local/app.qcow2", ""),
])
def test_a_disk_move_keeps_the_file_in_use(live: str | None, persistent: str | None,
                                            remove: str, repoint: str) -> None:
    d = decide(disk_move(), Facts(HERE, live_path=live, persistent_path=persistent))
    assert (d.verdict, d.remove_path, d.repoint_to) == (Verdict.ACT, remove, repoint)


@pytest.mark.parametrize("facts", [
    Facts(Place(True, DEST), live_path=None),  # the VM is not there
    Facts(Place(True, DEST, RUNNING, job=True), live_path="/fast/app.qcow2"),
    Facts(HERE, live_path="/elsewhere.qcow2", persistent_path="/elsewhere.qcow2"),
    Facts(HERE, live_path="/local/app.qcow2", persistent_path="/fast/app.qcow2"),
    Facts(Place(False)),
])
def test_a_disk_move_waits_when_it_cannot_tell(facts: Facts) -> None:
    assert verdict(disk_move(), facts) is Verdict.WAIT


# ---- kept on disk ------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", [volume(), old_disk(), incoming(), balloon(), disk_move()])
def test_entries_survive_their_json(entry: Cleanup) -> None:
    again = Cleanup.from_json(entry.to_json())
    assert again == entry
    assert entry.describe() and entry.vm_name in entry.describe()


# ---- what a finished migration says it still does -----------------------------------------
def test_a_memory_only_migration_does_not_say_it_removes_old_disks() -> None:
    assert finishing_message(set()) is None
    assert finishing_message({CleanupKind.OLD_DISK}) == "Removing the old disks from the source"
    assert finishing_message({CleanupKind.STARTED_PAUSED}) == (
        "Turning off the VM started paused to be sent")
    both = finishing_message({CleanupKind.OLD_DISK, CleanupKind.STARTED_PAUSED})
    assert both == ("Removing the old disks from the source and turning off the VM started "
                    "paused to be sent")
