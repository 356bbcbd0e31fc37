"""The few words a menu entry, a drop-down or a drop hint shows for a problem, in one table
(most telling first) for the whole console: Migrate to Server ▸, the wizard's destinations
and home servers, and the drop all say the same thing for the same problem."""

from __future__ import annotations

from collections.abc import Iterable

from xencenter_lite.core.checks import NIC_CODES, Code, Problem

# Problem code -> the few words shown after a server's name, most telling first.
SHORT_REASONS: dict[Code, str] = {
    Code.SAME_SERVER: "Current server",
    Code.DESTINATION_IN_MAINTENANCE: "Maintenance Mode",
    Code.DESTINATION_DISCONNECTED: "Disconnected",
    Code.DESTINATION_UNKNOWN: "Unknown server",
    Code.VM_GONE: "VM no longer exists",
    Code.SOURCE_DISCONNECTED: "Source server disconnected",
    Code.VM_NOT_RUNNING: "Not running",
    Code.VM_STATE_UNSUPPORTED: "Cannot move in its state",
    Code.VM_HAS_SAVED_STATE: "Has a saved state",
    Code.MIGRATION_RUNNING: "Migration in progress",
    Code.PCI_PASSTHROUGH: "PCI device passed through",
    Code.NOT_ENOUGH_MEMORY: "Not enough memory",
    Code.NETWORK_UNKNOWN: "No migration network",
    Code.DISK_UNSUPPORTED: "Disk cannot be migrated",
    Code.CD_NOT_VISIBLE: "CD cannot be seen there",
    Code.HA_ENABLED: "HA is enabled",
    Code.DUPLICATE_VM: "VM listed twice",
    Code.NAME_IN_USE: "Name in use there",
    Code.DISKS_NOT_VISIBLE: "Cannot see the VM's disks",
    Code.VM_STATE: "Not halted",
    Code.VM_HAS_SNAPSHOTS: "Has snapshots",
    Code.CPU_INCOMPATIBLE: "CPU not supported there",
    Code.CHECK_FAILED: "Check failed",
}
# Problems with the default choice of SRs or networks: the wizard lets the operator choose
# others (its Storage and Networking pages).
STORAGE_CODES = frozenset({Code.NO_SR_CHOSEN, Code.SR_NOT_VISIBLE, Code.SR_UNSUPPORTED,
                           Code.NOT_ENOUGH_SPACE, Code.UNKNOWN_DISK}) | NIC_CODES
_ORDER = {code: i for i, code in enumerate(SHORT_REASONS)}


def most_telling(problems: Iterable[Problem]) -> Problem | None:
    """The problem to name first, by the table's order (unlisted codes last)."""
    return min(problems, key=lambda p: _ORDER.get(p.code, len(_ORDER)), default=None)


def first_refusal(problems: Iterable[Problem]) -> Problem | None:
    """The blocking problem that rules a server out (storage choices don't: the wizard can fix
    them), most telling first."""
    return most_telling(p for p in problems if p.blocking and p.code not in STORAGE_CODES)


def short_reason(problem: Problem) -> str:
    """The words for `problem`: the table's, else its code in words (never a guess from its
    message)."""
    return SHORT_REASONS.get(problem.code, problem.code.replace("_", " ").capitalize())


