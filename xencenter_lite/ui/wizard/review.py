"""The Review page: the last checks, and Finish."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QSignalBlocker, QSize, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
)

from xencenter_lite.core.checks import Code, Problem, estimate_seconds
from xencenter_lite.core.model import VmState, describe_nic_target
from xencenter_lite.core.plan import (
    DataPath,
    MigrationPlan,
    MigrationRequest,
    build_plan,
)
from xencenter_lite.core.policy import (
    POST_COPY_RISK,
)
from xencenter_lite.core.units import format_duration
from xencenter_lite.ui.common import format_size, spawn
from xencenter_lite.ui.wizard.common import (
    HOW,
    SAVED_HOW,
    WizardPage,
    request_key,
)

if TYPE_CHECKING:
    from xencenter_lite.ui.wizard.migrate_wizard import MigrateWizard


class ReviewPage(WizardPage):
    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "reviewPage", "Review settings",
                         "Check the settings below, then click Finish to start the migration.")
        self.summary = QTreeWidget()
        self.summary.setObjectName("reviewSummary")
        self.summary.setHeaderLabels(["Setting", "Value"])
        self.summary.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.summary.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.layout_.addWidget(self.summary, 3)
        self.resume = QCheckBox("&Resume the paused VM on the destination after the migration")
        self.resume.setObjectName("resumeCheck")
        self.resume.setAccessibleName("Resume the VM on the destination")
        self.resume.toggled.connect(self._resume_toggled)
        self.layout_.addWidget(self.resume)
        self.status = QLabel()
        self.status.setObjectName("reviewStatus")
        self.status.setWordWrap(True)
        self.layout_.addWidget(self.status)
        self.problems = QListWidget()
        self.problems.setObjectName("reviewProblems")
        self.problems.setWordWrap(True)
        self.problems.setIconSize(QSize(16, 16))
        self.problems.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.layout_.addWidget(self.problems, 2)
        self.finish_layout()
        self._key: tuple[Any, ...] | None = None
        self._result: tuple[list[MigrationPlan], list[Problem]] | None = None

    def _resume_toggled(self, on: bool) -> None:
        self.w.resume = on
        self._fill_summary(self.w.requests())

    def initializePage(self) -> None:
        self.resume.setVisible(self.w.any_paused())
        with QSignalBlocker(self.resume):
            self.resume.setChecked(self.w.resume)
        requests = self.w.requests()
        self._fill_summary(requests)
        key = request_key(requests)
        if key != self._key or self._result is None:  # a choice changed: check again
            self._key, self._result = key, None
            self.status.setText("Checking…")
            self.problems.clear()
            spawn(self._check(key, requests))
        else:
            self._show_result()
        self.changed()

    def _vms_gone(self) -> None:
        if self.w.currentPage() is self:  # the result in hand is stale: check again
            self._result = None
            self.initializePage()

    async def _check(self, key: tuple[Any, ...], requests: list[MigrationRequest]) -> None:
        try:
            result = await self.w.engine.precheck(requests)
        except Exception as exc:  # say so rather than stay on "Checking…"
            result = ([], [Problem(Code.CHECK_FAILED, f"The check failed: {exc}")])
        if not shiboken6.isValid(self) or key != self._key:
            return  # the wizard closed, or the operator changed something meanwhile
        self._result = result
        self._show_result()
        self.changed()

    def _fill_summary(self, requests: list[MigrationRequest]) -> None:
        w = self.w
        snap = w.engine.snapshot()
        self.summary.clear()
        network = requests[0].network if requests else None
        for req in requests:
            vm = snap.vm(req.vm)
            top = QTreeWidgetItem(self.summary, ["VM", w.names[req.vm]])
            rows = [("Destination", w.target.name if w.target else ""),
                    ("Home server", req.destination)]
            plan = build_plan(snap, vm, req) if vm is not None else None
            if plan is not None:
                network = plan.network
                rows.append(("Migration", SAVED_HOW if plan.vm.managed_save
                             and plan.data_path is DataPath.DIRECT else HOW[plan.data_path]))
                for d in plan.disks:
                    where = d.target_sr if d.copy else f"stays on {d.source_sr}"
                    if d.loose and where:  # (a file in no SR: copied, and left where it is)
                        where += f" (copied from {d.source_path}, which stays)"
                    rows.append((f"Disk {d.dev} ({format_size(d.capacity)})", where or "?"))
                for n in plan.nics:
                    if n.target:
                        rows.append((f"NIC {n.nic.mac}", describe_nic_target(n.target)))
                if plan.vm.state is VmState.PAUSED:
                    rows.append(("After the migration",
                                 "Resumed" if plan.resume else "Stays paused"))
            if plan is None or plan.uses_network:
                rows.append(("Storage network", network or "(none)"))
                rows.append(("Encryption", "TLS" if req.tls else "none"))
            if plan is not None and not plan.offline:
                rows.append(("Migration settings", plan.settings.describe()))
                if plan.settings.post_copy_allowed:
                    rows.append(("Risk", POST_COPY_RISK))
            for name, value in rows:
                QTreeWidgetItem(top, [name, value])
            top.setExpanded(True)
        self.summary.resizeColumnToContents(0)

    def _show_result(self) -> None:
        assert self._result is not None
        plans, problems = self._result
        snap = self.w.engine.snapshot()
        errors = [p for p in problems if p.blocking]
        warnings = [p for p in problems if not p.blocking and p.code != Code.ESTIMATE]
        self.problems.clear()
        style = self.style()
        for p, icon in [*((p, QStyle.StandardPixmap.SP_MessageBoxCritical) for p in errors),
                        *((p, QStyle.StandardPixmap.SP_MessageBoxWarning) for p in warnings)]:
            text = (self.w.gone_problem() or p.message) if p.code == Code.VM_GONE else p.message
            QListWidgetItem(style.standardIcon(icon), text, self.problems)
        if errors:
            self.status.setText("The migration cannot start. Go Back and resolve these "
                                "problems:")
            return
        seconds = [estimate_seconds(snap, p) for p in plans]
        total = sum(s for s in seconds if s is not None)
        size = format_size(sum(p.bytes_to_copy for p in plans))
        estimate = (f" Estimated time: about {format_duration(total)} to copy {size}."
                    if total else "")
        self.status.setText("All checks passed; click Finish to start." + estimate)

    def isComplete(self) -> bool:
        return self._result is not None and not any(p.blocking for p in self._result[1])

    def validatePage(self) -> bool:
        if not super().validatePage() or not self.isComplete():
            return False
        self.w.jobs = self.w.engine.migrate(self.w.requests())
        return True
