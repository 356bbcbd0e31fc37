"""Migrate to Server ▸ and the other quick ways into a migration (drag and drop).

XenCenter lists every server and says why one can't take the VMs instead of hiding it; the
entry is checked in the background (engine.precheck) and reads "(Updating…)" meanwhile. A
choice that needs no disk copy only asks for confirmation; anything else opens the wizard
with that server chosen, because only the wizard lets the operator pick SRs.

For one VM the menu also shows placement's ranking, as XenCenter's Workload Balancing does:
"Optimal Server" first, then each server that can take the VM with its stars (1 to 5) and,
in its tooltip, the reasons for its score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QMessageBox, QWidget

from xencenter_lite.core.checks import (
    Code,
    Problem,
    nic_problems,
)
from xencenter_lite.core.model import Snapshot
from xencenter_lite.core.placement import Rating, rank
from xencenter_lite.core.plan import MigrationKind, MigrationRequest
from xencenter_lite.core.power import check_start_on
from xencenter_lite.core.reasons import first_refusal, most_telling, short_reason
from xencenter_lite.ui.common import spawn, star_text

if TYPE_CHECKING:
    from xencenter_lite.engine import Engine

VmKey = tuple[str, str]

def _quoted(names: Sequence[str]) -> str:
    q = [f"'{n}'" for n in names]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " and " + q[-1]


def confirm_text(vm_names: Sequence[str], destination: str) -> str:
    what = "the VM" if len(vm_names) == 1 else "the VMs"
    return f"Do you want to migrate {what} {_quoted(vm_names)} to the server '{destination}'?"


def open_wizard(engine: Engine, keys: list[VmKey], destination: str | None,
                parent: QWidget | None) -> QWidget:
    from xencenter_lite.ui.wizard import MigrateWizard

    wizard = MigrateWizard(engine, keys, destination=destination, parent=parent)
    add_server = getattr(parent, "add_server", None)  # "Add a pool or standalone server…"
    if add_server is not None and hasattr(wizard, "addServerRequested"):
        # The dialog is the wizard's: closed, it hands the focus back to the wizard.
        wizard.addServerRequested.connect(lambda: add_server(wizard))
    wizard.open()
    return wizard


def migrate_or_open_wizard(engine: Engine, keys: list[VmKey], destination: str,
                           parent: QWidget | None) -> QWidget:
    """XenCenter's drop/menu command: confirm a memory-only move, else open the wizard."""
    requests = [MigrationRequest(k, destination) for k in keys]
    try:
        plans = [engine.plan(r) for r in requests]
    except LookupError:
        plans = []
    snapshot = engine.snapshot()
    if not plans or any(p.kind is not MigrationKind.MEMORY or nic_problems(snapshot, p)
                        for p in plans):  # (the wizard chooses SRs and networks)
        return open_wizard(engine, keys, destination, parent)
    box = QMessageBox(QMessageBox.Icon.Question, "Migrate VM",
                      confirm_text([p.vm.name for p in plans], destination),
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, parent)
    box.setObjectName("confirmMigration")
    box.setDefaultButton(QMessageBox.StandardButton.Yes)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def finished(_result: int) -> None:
        if box.clickedButton() is box.button(QMessageBox.StandardButton.Yes):
            engine.migrate(requests)

    box.finished.connect(finished)
    box.open()
    return box


class MigrateToServerMenu(QMenu):
    """Every server, each checked in the background against the selected VMs."""

    def __init__(self, engine: Engine, vm_keys: Callable[[], list[VmKey]],
                 parent: QWidget | None = None) -> None:
        super().__init__("Migrate to &Server", parent)
        self.setObjectName("migrateToServerMenu")
        self.setToolTipsVisible(True)
        self.engine = engine
        self._vm_keys = vm_keys
        self._generation = 0
        self.pending = 0  # checks still running (tests wait on it)
        self.ratings: dict[str, Rating] = {}  # placement's, for one VM
        self.aboutToShow.connect(self.refresh)

    def _dialog_parent(self) -> QWidget | None:
        parent = self.parentWidget()
        return parent.window() if parent is not None else None

    def refresh(self) -> None:
        self.clear()
        self._generation += 1
        keys = self._vm_keys()
        snapshot: Snapshot = self.engine.snapshot()
        self.pending = 0
        self.ratings = {}
        vm = snapshot.vm(keys[0]) if len(keys) == 1 else None
        if vm is not None:
            ranked = rank(snapshot, vm, set(self.engine.busy) - {vm.key})
            self.ratings = {r.server: r for r in ranked}
            top = ranked[0] if ranked and ranked[0].eligible else None
            if top is not None:
                optimal = self.addAction(f"&Optimal Server: {top.server}")
                optimal.setObjectName("optimalServer")
                optimal.setToolTip("; ".join(top.reasons))
                optimal.triggered.connect(lambda: migrate_or_open_wizard(
                    self.engine, keys, top.server, self._dialog_parent()))
                self.addSeparator()
        for name in sorted(snapshot.servers):
            action = self.addAction(f"{name} (Updating…)")
            action.setEnabled(False)
            action.setData(name)
            if keys:
                self.pending += 1
                spawn(self._check(action, name, keys, self._generation))
        self.addSeparator()
        wizard = self.addAction("Migrate VM wizard…")
        wizard.setEnabled(bool(keys))
        wizard.triggered.connect(
            lambda: open_wizard(self.engine, keys, None, self._dialog_parent()))

    async def _check(self, action: QAction, server: str, keys: list[VmKey],
                     generation: int) -> None:
        try:
            _plans, problems = await self.engine.precheck(
                [MigrationRequest(k, server) for k in keys])
            refusal = first_refusal(problems)
            reason = short_reason(refusal) if refusal else None
            detail = refusal.message if refusal else ""
        except Exception as exc:  # a failed check must still settle the entry
            reason, detail = "Check failed", str(exc)
        if generation != self._generation or not shiboken6.isValid(action):
            return  # the menu was rebuilt meanwhile
        self.pending -= 1
        if reason is not None:
            action.setText(f"{server} ({reason})")
            action.setToolTip(detail)
            return
        rating = self.ratings.get(server)
        if rating is not None and rating.eligible:
            action.setText(f"{server}  {star_text(rating.stars)}")
            action.setToolTip(f"{rating.score:.0f}/100: " + "; ".join(rating.reasons))
        else:
            action.setText(server)
        action.setEnabled(True)
        action.triggered.connect(
            lambda: migrate_or_open_wizard(self.engine, keys, server, self._dialog_parent()))

    def entries(self) -> list[tuple[str, bool]]:
        """(text, enabled) of each entry, for tests and accessibility checks."""
        return [(a.text(), a.isEnabled()) for a in self.actions()
                if not a.isSeparator() and a.objectName() != "optimalServer"]

    def optimal(self) -> QAction | None:
        """The "Optimal Server" entry (one VM that some server can take), else None."""
        return next((a for a in self.actions() if a.objectName() == "optimalServer"), None)


class StartOnServerMenu(QMenu):
    """Start on Server ▸ for halted VMs: every server, the ones that cannot start them there
    disabled with the reason (checked from the console's model, at once); the VM's own
    server is plain Start. Elsewhere its definition moves there first (no disk copy: the
    server sees its disks), then it starts: two jobs in Events."""

    def __init__(self, engine: Engine, vm_keys: Callable[[], list[VmKey]],
                 parent: QWidget | None = None) -> None:
        super().__init__("Start &on Server", parent)
        self.setObjectName("startOnServerMenu")
        self.setToolTipsVisible(True)
        self.engine = engine
        self._vm_keys = vm_keys
        self.aboutToShow.connect(self.refresh)

    def refresh(self) -> None:
        self.clear()
        keys = self._vm_keys()
        snapshot: Snapshot = self.engine.snapshot()
        vms = [snapshot.vm(k) for k in keys]
        for name in sorted(snapshot.servers):
            problems: list[Problem] = []
            for vm in vms:
                if vm is None:
                    problems.append(Problem(Code.VM_GONE, "The VM no longer exists."))
                else:
                    problems += check_start_on(snapshot, vm, name, set(self.engine.busy))
            refusal = most_telling(problems)
            here = bool(vms) and all(v is not None and v.server == name for v in vms)
            label = f"{name} (Current server)" if here else name
            action = self.addAction(f"{name} ({short_reason(refusal)})" if refusal else label)
            action.setData(name)
            action.setEnabled(refusal is None and bool(keys))
            action.setToolTip(refusal.message if refusal else "")
            action.triggered.connect(lambda _=False, n=name: self.start_on(keys, n))

    def start_on(self, keys: list[VmKey], server: str) -> None:
        for key in keys:
            spawn(self.engine.start_on(key, server))

    def entries(self) -> list[tuple[str, bool]]:
        return [(a.text(), a.isEnabled()) for a in self.actions() if not a.isSeparator()]
