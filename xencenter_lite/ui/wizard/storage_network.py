"""The Storage network page: the network the migration data takes, TLS, and how a live
migration is made to finish.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QStyle,
)

from xencenter_lite.core.plan import (
    default_network,
)
from xencenter_lite.core.policy import (
    MAX_DOWNTIME_RANGE,
    MAX_PARALLEL,
    POST_COPY_RISK,
    MigrationSettings,
    OnTimeout,
    Policy,
)
from xencenter_lite.ui.wizard.common import (
    MANAGEMENT_WARNING,
    Entry,
    WizardPage,
    current_enabled,
    fill_combo,
)

if TYPE_CHECKING:
    from xencenter_lite.ui.wizard.migrate_wizard import MigrateWizard


class StorageNetworkPage(WizardPage):
    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "storageNetworkPage", "Select the storage network",
                         "The migration data goes to the destination's address on this "
                         "network.")
        form = QFormLayout()
        self.combo = QComboBox()
        self.combo.setObjectName("storageNetworkCombo")
        self.combo.setMinimumWidth(320)
        form.addRow("Storage &network:", self.combo)
        self.layout_.addLayout(form)
        self.warning_icon, self.warning = self._warning(MANAGEMENT_WARNING, "managementWarning")
        row = QFormLayout()
        row.addRow(self.warning_icon, self.warning)
        self.layout_.addLayout(row)
        self.tls = QCheckBox("&Encrypt the migration (TLS; both servers need libvirt's TLS "
                             "certificates)")
        self.tls.setObjectName("tlsCheck")
        self.tls.setAccessibleName("Encrypt the migration (TLS)")
        self.layout_.addWidget(self.tls)
        self.layout_.addWidget(self._settings_box())
        self.layout_.addStretch(1)
        self.finish_layout()
        self.combo.currentIndexChanged.connect(self._picked)
        self.tls.toggled.connect(self._tls_toggled)

    def _warning(self, text: str, name: str) -> tuple[QLabel, QLabel]:
        """A warning icon and its wrapped text, for one form row."""
        label = QLabel(text)
        label.setObjectName(name)
        label.setWordWrap(True)
        icon = QLabel()
        pixmap = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        icon.setPixmap(pixmap.pixmap(16, 16))
        return icon, label

    def _settings_box(self) -> QGroupBox:
        """Migration settings: the policy that makes a busy VM's migration finish."""
        box = QGroupBox("Migration settings")
        box.setObjectName("migrationSettings")
        form = QFormLayout(box)
        self.policy = QComboBox()
        self.policy.setObjectName("policyCombo")
        for p in Policy:
            self.policy.addItem(p.label, p)
        form.addRow("&Policy:", self.policy)
        self.policy_summary = QLabel()
        self.policy_summary.setObjectName("policySummary")
        self.policy_summary.setWordWrap(True)
        form.addRow("", self.policy_summary)
        self.downtime = QSpinBox()
        self.downtime.setObjectName("maxDowntimeSpin")
        self.downtime.setRange(*MAX_DOWNTIME_RANGE)
        self.downtime.setSingleStep(50)
        self.downtime.setSuffix(" ms")
        form.addRow("Maximum &downtime:", self.downtime)
        timeout_row = QHBoxLayout()
        self.timeout_check = QCheckBox("After")
        self.timeout_check.setObjectName("timeoutCheck")
        self.timeout = QSpinBox()
        self.timeout.setObjectName("timeoutSpin")
        self.timeout.setRange(1, 24 * 3600)
        self.timeout.setSuffix(" s")
        self.on_timeout = QComboBox()
        self.on_timeout.setObjectName("onTimeoutCombo")
        for o, text in ((OnTimeout.ABORT, "give up (the VM stays where it is)"),
                        (OnTimeout.POST_COPY, "switch to post-copy"),
                        (OnTimeout.SUSPEND, "pause the VM until the copy completes")):
            self.on_timeout.addItem(text, o)
        for wdg in (self.timeout_check, self.timeout, self.on_timeout):
            timeout_row.addWidget(wdg)
        timeout_row.addStretch(1)
        form.addRow("&Timeout:", timeout_row)
        self.compress = QCheckBox("&Compress memory pages (xbzrle), for a slow network")
        self.compress.setObjectName("compressCheck")
        form.addRow("", self.compress)
        self.parallel = QSpinBox()
        self.parallel.setObjectName("parallelSpin")
        self.parallel.setRange(1, MAX_PARALLEL)
        form.addRow("C&onnections:", self.parallel)
        self.risk_icon, self.risk = self._warning(POST_COPY_RISK, "postCopyRisk")
        form.addRow(self.risk_icon, self.risk)
        self.settings_problem = QLabel()
        self.settings_problem.setObjectName("settingsProblem")
        self.settings_problem.setWordWrap(True)
        form.addRow("", self.settings_problem)
        self._show_settings(self.w.settings)
        self.policy.currentIndexChanged.connect(self._settings_changed)
        self.on_timeout.currentIndexChanged.connect(self._settings_changed)
        for spin in (self.downtime, self.timeout, self.parallel):
            spin.valueChanged.connect(self._settings_changed)
        for check in (self.timeout_check, self.compress):
            check.toggled.connect(self._settings_changed)
        return box

    def _show_settings(self, st: MigrationSettings) -> None:
        widgets = (self.policy, self.downtime, self.timeout_check, self.timeout,
                   self.on_timeout, self.compress, self.parallel)
        blockers = [QSignalBlocker(wdg) for wdg in widgets]
        self.policy.setCurrentIndex(self.policy.findData(st.policy))
        self.downtime.setValue(st.max_downtime_ms)
        self.timeout_check.setChecked(st.timeout_s is not None)
        self.timeout.setValue(st.timeout_s or 300)
        self.on_timeout.setCurrentIndex(self.on_timeout.findData(st.on_timeout))
        self.compress.setChecked(st.compression)
        self.parallel.setValue(st.parallel or 1)
        del blockers
        self._show_risk(st)

    def _show_risk(self, st: MigrationSettings) -> None:
        self.policy_summary.setText(st.policy.summary[:1].upper() + st.policy.summary[1:] + ".")
        self.timeout.setEnabled(self.timeout_check.isChecked())
        self.on_timeout.setEnabled(self.timeout_check.isChecked())
        self.risk.setVisible(st.post_copy_allowed)
        self.risk_icon.setVisible(st.post_copy_allowed)
        problems = st.problems()
        self.settings_problem.setText(" ".join(p[:1].upper() + p[1:] for p in problems))
        self.settings_problem.setVisible(bool(problems))

    def settings_from_widgets(self) -> MigrationSettings:
        parallel = self.parallel.value()
        return replace(
            self.w.settings, policy=self.policy.currentData(),
            max_downtime_ms=self.downtime.value(),
            timeout_s=self.timeout.value() if self.timeout_check.isChecked() else None,
            on_timeout=self.on_timeout.currentData(), compression=self.compress.isChecked(),
            parallel=parallel if parallel > 1 else None)

    def _settings_changed(self) -> None:
        self.w.settings = self.settings_from_widgets()
        self._show_risk(self.w.settings)
        self.changed()

    def _tls_toggled(self, on: bool) -> None:
        self.w.tls = on
        self.changed()

    def initializePage(self) -> None:
        w = self.w
        snap = w.engine.snapshot()
        servers = w.home_servers()
        addresses = [snap.servers[s].addresses for s in servers if s in snap.servers]
        names = sorted(set.intersection(*(set(a) for a in addresses))) if addresses else []
        if w.network not in names:
            w.network = default_network(snap, servers[0]) if servers else None
        mgmt = snap.management_network()
        entries = []
        for name in names:
            label = f"{name} ({addresses[0][name]})" if len(addresses) == 1 else name
            entries.append(Entry(label + (" - management network" if name == mgmt else ""),
                                 name))
        fill_combo(self.combo, entries, w.network)
        self._show_warning()
        self.changed()

    def _picked(self) -> None:
        self.w.network = self.combo.currentData()
        self._show_warning()
        self.changed()

    def _show_warning(self) -> None:
        management = self.w.network == self.w.engine.snapshot().management_network()
        self.warning.setVisible(management)
        self.warning_icon.setVisible(management)

    def isComplete(self) -> bool:
        return current_enabled(self.combo) and not self.w.settings.problems()
