"""The Migrate VM wizard: where the VMs go, where their disks go, over which network.

Like XenCenter's CrossPoolMigrateWizard it only builds one MigrationRequest per VM; the
engine checks and runs them. Every check runs in the background (engine.precheck) and the
pages show "waiting…" or "Checking…" meanwhile, so the Qt loop never blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import shiboken6
from PySide6.QtCore import QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QRadioButton,
    QSpinBox,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from xencenter_lite.core.checks import Code, Problem, estimate_seconds, nic_problems
from xencenter_lite.core.jobs import Job
from xencenter_lite.core.model import VM, Snapshot, VmState, describe_nic_target
from xencenter_lite.core.placement import Rating, place_together, rate
from xencenter_lite.core.plan import (
    DataPath,
    MigrationKind,
    MigrationPlan,
    MigrationRequest,
    build_plan,
    default_network,
    default_sr,
)
from xencenter_lite.core.policy import (
    MAX_DOWNTIME_RANGE,
    MAX_PARALLEL,
    POST_COPY_RISK,
    MigrationSettings,
    OnTimeout,
    Policy,
)
from xencenter_lite.core.reasons import STORAGE_CODES, short_reason
from xencenter_lite.core.units import format_duration
from xencenter_lite.ui.common import format_size, problem_label, show_non_modal, spawn, star_text
from xencenter_lite.ui.events import weak_listener
from xencenter_lite.ui.move_disk import sr_reason

VmKey = tuple[str, str]
DESTINATION, HOME_SERVER, STORAGE, NETWORKING, STORAGE_NETWORK, REVIEW = range(6)
STEP_NAMES = {DESTINATION: "Destination", HOME_SERVER: "Home Server", STORAGE: "Storage",
              NETWORKING: "Networking", STORAGE_NETWORK: "Storage network",
              REVIEW: "Finish"}
ADD_SERVER = "Add a pool or standalone server…"
MANAGEMENT_WARNING = ("Due to performance reasons, it is recommended that you do not use your "
                      "management network for live migration.")

HOW = {
    DataPath.LIVE: "Live (the VM keeps its state)",
    DataPath.STREAM: "Halted: disks copied through the console and verified, then its "
                     "definition",
    DataPath.DEFINITION: "Halted: its definition only (the disks stay)",
    DataPath.DIRECT: "Halted: started paused (no guest code runs), its disks sent directly "
                     "over the storage network, then turned off there",
}

SAVED_HOW = ("Halted with a saved state: restored paused, migrated over the storage network, "
             "saved again there")

@dataclass(frozen=True)
class Target:
    """A destination entry: a pool (any of its members) or a standalone server."""

    name: str
    members: tuple[str, ...]
    is_pool: bool


def targets_of(snap: Snapshot) -> list[Target]:
    out = [Target(p.name, p.members, True) for p in snap.pools.values() if p.members]
    return out + [Target(s.name, (s.name,), False) for s in snap.servers.values()
                  if s.pool is None]


@dataclass(frozen=True)
class Entry:
    """One drop-down entry; `reason` says why it is disabled."""

    text: str
    value: Any
    reason: str | None = None
    tip: str = ""


def fill_combo(combo: QComboBox, entries: list[Entry], current: Any) -> None:
    """Show `entries` without emitting change signals, keeping `current` selected.

    The same values in the same order are updated in place: replacing the model of a combo
    that is emitting its own change signal would delete the model under its feet."""
    model = combo.model()
    same = isinstance(model, QStandardItemModel) and model.rowCount() == len(entries) and all(
        model.item(i).data(Qt.ItemDataRole.UserRole) == e.value for i, e in enumerate(entries))
    if not same:
        model = QStandardItemModel(combo)
        for e in entries:
            item = QStandardItem()
            item.setData(e.value, Qt.ItemDataRole.UserRole)
            model.appendRow(item)
    assert isinstance(model, QStandardItemModel)
    index = -1
    for i, e in enumerate(entries):
        item = model.item(i)
        item.setText(e.text)
        item.setEnabled(e.reason is None)
        item.setToolTip(e.tip or e.reason or "")
        if e.value == current:
            index = i
    with QSignalBlocker(combo):
        if not same:
            combo.setModel(model)
        if combo.currentIndex() != index:
            combo.setCurrentIndex(index)


def enabled_at(combo: QComboBox, i: int) -> bool:
    model = combo.model()
    return i >= 0 and bool(model.flags(model.index(i, 0)) & Qt.ItemFlag.ItemIsEnabled)


def current_enabled(combo: QComboBox) -> bool:
    return enabled_at(combo, combo.currentIndex())


def grid_table(name: str, headers: list[str]) -> QTableWidget:
    """A read-only grid whose last column (the drop-downs) takes the room left."""
    table = QTableWidget(0, len(headers))
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.horizontalHeader().setMinimumSectionSize(90)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def request_key(requests: list[MigrationRequest]) -> tuple[Any, ...]:
    return tuple((r.vm, r.destination, r.sr, tuple(sorted(r.disk_srs.items())), r.network,
                  r.tls, r.settings, tuple(sorted(r.nics.items()))) for r in requests)



class MigrateWizard(QWizard):
    """The choices shared by every page, the background checks, and the page order."""

    addServerRequested = Signal()
    checksChanged = Signal()  # a destination server's background check came back
    targetsChanged = Signal()  # servers or pools appeared or went
    vmsGone = Signal()  # one of the VMs no longer exists (deleted while the wizard is open)

    def __init__(self, engine: Any, vm_keys: list[VmKey], destination: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("migrateWizard")
        self.engine = engine
        self.vm_keys = list(vm_keys)
        snap = engine.snapshot()
        self.names = {k: vm.name if (vm := snap.vm(k)) else k[1] for k in self.vm_keys}
        self.preferred = destination
        self.target: Target | None = None
        self.homes: dict[VmKey, str] = {}
        self.same_sr = True
        self.sr: str | None = None
        self.disk_srs: dict[VmKey, dict[str, str]] = {}
        self.network: str | None = None
        self.nic_maps: dict[VmKey, dict[str, str]] = {}  # the Networking page's: MAC -> target
        self.tls = False
        # How a live migration is made to finish: the inventory's defaults until changed.
        self.settings: MigrationSettings = engine.inventory.migration
        self.resume = False  # paused VMs: resume them on the destination
        self.jobs: list[Job] = []
        self._checks: dict[str, list[Problem]] = {}
        self._checking: set[str] = set()
        self._connected = {n: s.connected for n, s in snap.servers.items()}
        self._targets = targets_of(snap)
        self._gone = self.gone(snap)

        self.setWindowTitle("Migrate VM" if len(self.vm_keys) == 1 else "Migrate VMs")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage)
        self.steps = QLabel()
        self.steps.setObjectName("wizardSteps")
        self.steps.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.steps.setMinimumWidth(150)
        self.steps.setContentsMargins(12, 12, 12, 12)
        self.setSideWidget(self.steps)
        self.resize(820, 560)

        for server in snap.servers:
            self.check_server(server)
        self.setPage(DESTINATION, DestinationPage(self))
        self.setPage(HOME_SERVER, HomeServerPage(self))
        self.setPage(STORAGE, StoragePage(self))
        self.setPage(NETWORKING, NetworkingPage(self))
        self.setPage(STORAGE_NETWORK, StorageNetworkPage(self))
        self.setPage(REVIEW, ReviewPage(self))
        self.currentIdChanged.connect(self._show_steps)
        self._show_steps()

        engine.subscribe(weak_listener(self._snapshot_changed))

    def open(self) -> None:
        """Show without blocking anything else; once closed, the wizard goes away."""
        show_non_modal(self)

    # ---- the background checks --------------------------------------------------------
    def check_server(self, server: str) -> None:
        """Check whether `server` can take the VMs; checksChanged says when it knows."""
        if server in self._checking:
            return
        self._checks.pop(server, None)
        self._checking.add(server)
        spawn(self._check(server))

    async def _check(self, server: str) -> None:
        requests = [MigrationRequest(k, server) for k in self.vm_keys]
        try:
            _, problems = await self.engine.precheck(requests)
        except Exception as exc:  # a broken check must not leave the entry waiting forever
            problems = [Problem(Code.CHECK_FAILED, f"The check failed: {exc}")]
        if not shiboken6.isValid(self):
            return
        self._checking.discard(server)
        self._checks[server] = [p for p in problems
                                if p.blocking and p.code not in STORAGE_CODES]
        self.checksChanged.emit()

    def refusal(self, key: VmKey, server: str) -> Problem | None:
        """Why `server` cannot take this VM (None: it can, or it is not checked yet)."""
        name = self.names[key]
        return next((p for p in self._checks.get(server, []) if p.vm in ("", name)), None)

    def checked(self, server: str) -> bool:
        return server in self._checks

    def target_state(self, target: Target) -> tuple[bool, Problem | None]:
        """(checked, why not usable): usable when every VM has a member that takes it."""
        if not all(self.checked(m) for m in target.members):
            return False, None
        for key in self.vm_keys:
            refusals = [self.refusal(key, m) for m in target.members]
            if all(refusals):
                return True, next((r for r in refusals if r and r.code != Code.SAME_SERVER),
                                  refusals[0])
        return True, None

    def targets(self) -> list[Target]:
        return list(self._targets)

    def _snapshot_changed(self, snap: Snapshot) -> None:
        for name, srv in snap.servers.items():
            if self._connected.get(name) != srv.connected:
                self._connected[name] = srv.connected
                self.check_server(name)
        gone = self.gone(snap)
        if gone - self._gone:
            for name in snap.servers:  # the destinations say so too
                self.check_server(name)
            self.vmsGone.emit()
        self._gone = gone
        targets = targets_of(snap)
        if targets != self._targets:
            self._targets = targets
            self.targetsChanged.emit()

    # ---- the choices ------------------------------------------------------------------
    def vms(self, snap: Snapshot) -> list[VM]:
        return [vm for k in self.vm_keys if (vm := snap.vm(k)) is not None]

    def set_target(self, target: Target | None) -> None:
        if target != self.target:
            self.target = target
            self.homes = {}

    def home(self, key: VmKey) -> str | None:
        if self.target is None:
            return None
        if not self.target.is_pool:
            return self.target.name
        return self.homes.get(key)

    def usable_members(self, key: VmKey) -> list[str]:
        assert self.target is not None
        return [m for m in self.target.members if self.refusal(key, m) is None]

    def choose_default_homes(self) -> None:
        """The server the VM was dropped on, else keep the choice, else the most free memory."""
        if self.target is None or not self.target.is_pool:
            return
        snap = self.engine.snapshot()
        for key in self.vm_keys:
            usable = self.usable_members(key)
            if self.homes.get(key) in usable or not usable:
                continue
            if self.preferred in usable:
                self.homes[key] = self.preferred
                continue
            vm = snap.vm(key)
            busy = set(self.engine.busy) - {key}
            scores = {m: rate(snap, vm, m, busy).score if vm is not None else 0.0
                      for m in usable}
            # Placement's best member (ties: the most free memory, then the name).
            self.homes[key] = max(sorted(usable),
                                  key=lambda m: (scores[m], snap.memory_available(m)))

    def best_servers(self) -> dict[VmKey, Rating]:
        """Placement's pick for each VM (the VMs placed together), for those it has one."""
        snap = self.engine.snapshot()
        busy = set(self.engine.busy) - set(self.vm_keys)
        picks: dict[VmKey, Rating] = {}
        for vm, ratings in place_together(snap, self.vms(snap), busy):
            if ratings and ratings[0].eligible:
                picks[vm.key] = ratings[0]
        return picks

    def recommended_target(self, usable: list[Target]) -> tuple[Target | None, str]:
        """The usable target holding most of placement's picks, and why, in words."""
        picks = self.best_servers()
        scored = [(sum(1 for r in picks.values() if r.server in t.members), -i, t)
                  for i, t in enumerate(usable)]
        held, _order, target = max(scored, key=lambda x: (x[0], x[1]), default=(0, 0, None))
        if target is None or held == 0:
            return None, ""
        why = "; ".join(f"'{self.names[k]}' → {r.server} ({star_text(r.stars)}): "
                        + ", ".join(r.reasons) for k, r in picks.items()
                        if r.server in target.members)
        return target, f"Recommended: {target.name}. {why}"

    def home_servers(self) -> list[str]:
        return sorted({h for k in self.vm_keys if (h := self.home(k))})

    def _home_plans(self) -> list[MigrationPlan] | None:
        """Each VM's plan to its home server over the chosen network, with its disks'
        default SRs (None while a VM or its home server is not known)."""
        snap = self.engine.snapshot()
        plans = []
        for key in self.vm_keys:
            vm, home = snap.vm(key), self.home(key)
            if vm is None or home is None:
                return None
            plans.append(build_plan(snap, vm, MigrationRequest(key, home,
                                                               network=self.network)))
        return plans

    def needs_storage(self) -> bool:
        """False when every VM moves memory only (its disks are on storage the home sees)."""
        plans = self._home_plans()
        return plans is None or any(p.kind is MigrationKind.STORAGE for p in plans)

    def path(self) -> list[int]:
        ids = [DESTINATION]
        if self.target is not None and self.target.is_pool:
            ids.append(HOME_SERVER)
        if self.needs_storage():
            ids.append(STORAGE)
        if self.needs_networking():
            ids.append(NETWORKING)
        if self.needs_network():
            ids.append(STORAGE_NETWORK)
        return [*ids, REVIEW]

    def needs_networking(self) -> bool:
        """The Networking page: a VM with NICs goes out of its pool (XenCenter's cross-pool
        step), or one of its NICs would find nothing of its name on its home server."""
        plans = self._home_plans()
        if plans is None:
            return False
        snap = self.engine.snapshot()
        for plan in plans:
            if not any(n.target for n in plan.vm.nics):
                continue
            pool = snap.pool_of(plan.source)
            if pool is None or plan.destination not in pool.members or nic_problems(snap, plan):
                return True
        return False

    def needs_network(self) -> bool:
        """False when every VM is halted and moves through the console or moves its
        definition only: no data goes between the servers."""
        plans = self._home_plans()
        return plans is None or any(p.uses_network for p in plans)

    def any_paused(self) -> bool:
        snap = self.engine.snapshot()
        return any((v := snap.vm(k)) is not None and v.state is VmState.PAUSED
                   for k in self.vm_keys)

    def nextId(self) -> int:
        path = self.path()
        cur = self.currentId()
        if cur not in path:
            return -1
        i = path.index(cur)
        return path[i + 1] if i + 1 < len(path) else -1

    def requests(self, storage: bool | None = None) -> list[MigrationRequest]:
        """What the wizard asks the engine for, one request per VM."""
        path = self.path()  # (each look at the path builds every VM's plan)
        if storage is None:
            storage = STORAGE in path
        networking = NETWORKING in path
        out = []
        for key in self.vm_keys:
            home = self.home(key) or ""
            common: dict[str, Any] = {"network": self.network, "tls": self.tls,
                                      "resume": self.resume, "settings": self.settings}
            if networking:
                common["nics"] = dict(self.nic_maps.get(key, {}))
            if not storage:
                out.append(MigrationRequest(key, home, **common))
            elif self.same_sr:
                out.append(MigrationRequest(key, home, sr=self.sr, **common))
            else:
                out.append(MigrationRequest(key, home, disk_srs=dict(self.disk_srs.get(key, {})),
                                            **common))
        return out

    def gone(self, snap: Snapshot) -> set[VmKey]:
        """The VMs their (connected) server no longer has: deleted, or moved elsewhere."""
        return {k for k in self.vm_keys if snap.vm(k) is None
                and (srv := snap.servers.get(k[0])) is not None and srv.connected}

    def gone_problem(self) -> str | None:
        gone = self.gone(self.engine.snapshot())
        if not gone:
            return None
        what = "; ".join(f"'{self.names[k]}' no longer exists on '{k[0]}'"
                         for k in self.vm_keys if k in gone)
        return f"{what}; close the wizard and choose the VM{'s' if len(gone) > 1 else ''} again."

    def connectivity_problem(self, page: int) -> str | None:
        """Why the wizard cannot go on with the servers as they are now (None: it can)."""
        gone = self.gone_problem()
        if gone is not None:
            return gone
        snap = self.engine.snapshot()
        for key in self.vm_keys:
            name = self.names[key]
            src = snap.servers.get(key[0])
            if src is None or not src.connected:
                return f"'{key[0]}', the server of '{name}', is no longer connected; wait " \
                       "for it to reconnect."
        if self.target is None:
            return None
        if page == DESTINATION and self.target.is_pool:
            servers = [] if any(snap.servers[m].connected for m in self.target.members) \
                else list(self.target.members)
        else:
            servers = self.home_servers()
        for server in servers:
            srv = snap.servers.get(server)
            if srv is None or not srv.connected:
                self.check_server(server)
                why = f" ({srv.error})" if srv is not None and srv.error else ""
                return f"'{server}' is no longer connected{why}; choose another destination " \
                       "or wait for it to reconnect."
        return None

    def _show_steps(self, *_: Any) -> None:
        current = self.currentId()
        path = self.path()
        lines = []
        for pid in path:
            name = STEP_NAMES[pid]
            if pid == current:
                lines.append(f"<p><b>{name}</b></p>")
            elif current in path and path.index(pid) < path.index(current):
                lines.append(f"<p>{name}</p>")
            else:
                lines.append(f"<p style='color:gray'>{name}</p>")
        self.steps.setText("".join(lines))


class WizardPage(QWizardPage):
    """A page with a line that says why it refuses to go on."""

    def __init__(self, wizard: MigrateWizard, name: str, title: str, subtitle: str) -> None:
        super().__init__()
        self.w = wizard
        self.setObjectName(name)
        self.setAccessibleName(f"{title} page")
        self.setTitle(title)
        self.setSubTitle(subtitle)
        self.layout_ = QVBoxLayout(self)
        self.problem = problem_label("pageProblem")
        wizard.vmsGone.connect(self._vms_gone)

    def _vms_gone(self) -> None:
        if self.w.currentPage() is self:
            self.show_problem(self.w.gone_problem())

    def finish_layout(self) -> None:
        self.layout_.addWidget(self.problem)

    def show_problem(self, text: str | None) -> None:
        self.problem.setText(text or "")
        self.problem.setVisible(bool(text))

    def validatePage(self) -> bool:
        problem = self.w.connectivity_problem(self.w.currentId())
        self.show_problem(problem)
        return problem is None

    def cleanupPage(self) -> None:
        self.show_problem(None)

    def changed(self) -> None:
        self.show_problem(None)
        self.completeChanged.emit()
        self.w._show_steps()


class DestinationPage(WizardPage):
    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "destinationPage",
                         "Select the destination pool or standalone server",
                         "The VM can run on any server of a pool, or on a standalone server.")
        form = QFormLayout()
        self.combo = QComboBox()
        self.combo.setObjectName("destinationCombo")
        self.combo.setPlaceholderText("Choose a pool or standalone server")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.setMinimumWidth(320)
        form.addRow("&Destination:", self.combo)
        self.layout_.addLayout(form)
        self.reason = QLabel()
        self.reason.setObjectName("destinationReason")
        self.reason.setWordWrap(True)
        self.reason.hide()
        self.layout_.addWidget(self.reason)
        self.recommendation = QLabel()
        self.recommendation.setObjectName("destinationRecommendation")
        self.recommendation.setWordWrap(True)
        self.recommendation.hide()
        self.layout_.addWidget(self.recommendation)
        self.layout_.addWidget(QLabel("VMs to migrate:"))
        self.grid = QTreeWidget()
        self.grid.setObjectName("vmGrid")
        self.grid.setHeaderLabels(["VM", "Current server"])
        self.grid.setRootIsDecorated(False)
        snap = wizard.engine.snapshot()
        for key in wizard.vm_keys:
            vm = snap.vm(key)
            QTreeWidgetItem(self.grid, [wizard.names[key], vm.server if vm else key[0]])
        self.grid.setColumnWidth(0, 200)
        self.layout_.addWidget(self.grid)
        self.finish_layout()
        self._last = -1
        self._rebuild()
        self.combo.currentIndexChanged.connect(self._picked)
        wizard.checksChanged.connect(self._refresh)
        wizard.targetsChanged.connect(self._rebuild)

    def _preferred_target(self) -> Target | None:
        pref = self.w.preferred
        return next((t for t in self.w.targets() if pref == t.name or pref in t.members), None)

    def _rebuild(self) -> None:
        targets = self.w.targets()
        current = self.w.target or self._preferred_target()
        if current is None and len(targets) == 1:
            current = targets[0]
        icons = {True: QStyle.StandardPixmap.SP_DirIcon,
                 False: QStyle.StandardPixmap.SP_ComputerIcon}
        fill_combo(self.combo, [Entry(t.name, t) for t in targets]
                   + [Entry(ADD_SERVER, ADD_SERVER)], current)
        model = self.combo.model()
        assert isinstance(model, QStandardItemModel)
        for i, t in enumerate(targets):
            model.item(i).setIcon(self.style().standardIcon(icons[t.is_pool]))
        self._last = self.combo.currentIndex()
        self.w.set_target(current if current in targets else None)
        self._refresh()

    def _refresh(self) -> None:
        """Show each entry's check result; pick the only usable entry if none is chosen."""
        model = self.combo.model()
        assert isinstance(model, QStandardItemModel)
        usable, pending = [], False
        for i in range(model.rowCount()):
            target = model.item(i).data(Qt.ItemDataRole.UserRole)
            if not isinstance(target, Target):
                continue
            checked, why = self.w.target_state(target)
            pending |= not checked
            item = model.item(i)
            if not checked:
                item.setText(f"{target.name} (waiting…)")
            elif why is not None:
                item.setText(f"{target.name} - {short_reason(why)}")
            else:
                item.setText(target.name)
                usable.append(i)
            item.setEnabled(why is None)
            item.setToolTip(why.message if why else "")
        if not pending:
            targets = [model.item(i).data(Qt.ItemDataRole.UserRole) for i in usable]
            best, advice = self.w.recommended_target(targets)
            self.recommendation.setText(advice)
            self.recommendation.setVisible(bool(advice))
            if self.combo.currentIndex() < 0 and usable:
                pick = usable[targets.index(best)] if best in targets else (
                    usable[0] if len(usable) == 1 else -1)
                if pick >= 0:
                    self.combo.setCurrentIndex(pick)
        self._show_reason()
        self.changed()

    def _picked(self, index: int) -> None:
        data = self.combo.itemData(index)
        if not isinstance(data, Target) and index >= 0:
            with QSignalBlocker(self.combo):
                self.combo.setCurrentIndex(self._last)
            self.w.addServerRequested.emit()
            return
        self._last = index
        self.w.set_target(data if isinstance(data, Target) else None)
        self._show_reason()
        self.changed()

    def _show_reason(self) -> None:
        target = self.w.target
        why = self.w.target_state(target)[1] if target else None
        self.reason.setText(why.message if why else "")
        self.reason.setVisible(why is not None)

    def isComplete(self) -> bool:
        target = self.w.target
        return target is not None and self.w.target_state(target) == (True, None)

    def validatePage(self) -> bool:
        if not super().validatePage():
            return False
        self.w.choose_default_homes()
        return True


class HomeServerPage(WizardPage):
    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "homeServerPage", "Select a home server in the pool",
                         "The home server is the server the VM will run on; it is recorded "
                         "as the VM's home server.")
        self.table = grid_table("homeServerTable", ["VM", "Current server", "Home server"])
        self.layout_.addWidget(self.table)
        self.finish_layout()
        self.combos: dict[VmKey, QComboBox] = {}

    def initializePage(self) -> None:
        w = self.w
        assert w.target is not None
        w.choose_default_homes()
        snap = w.engine.snapshot()
        self.table.setRowCount(len(w.vm_keys))
        self.combos = {}
        for row, key in enumerate(w.vm_keys):
            vm = snap.vm(key)
            self.table.setItem(row, 0, QTableWidgetItem(w.names[key]))
            self.table.setItem(row, 1, QTableWidgetItem(vm.server if vm else key[0]))
            combo = QComboBox()
            combo.setObjectName(f"home:{w.names[key]}")
            entries = []
            for m in w.target.members:
                why = w.refusal(key, m)
                if why is not None:
                    entries.append(Entry(f"{m} - {short_reason(why)}", m, short_reason(why),
                                         why.message))
                else:
                    free = format_size(snap.memory_available(m)) if m in snap.servers else "?"
                    rating = rate(snap, vm, m, set(w.engine.busy) - {key}) if vm else None
                    if rating is not None and rating.eligible:
                        entries.append(Entry(f"{m} ({free} free memory)  "
                                             f"{star_text(rating.stars)}", m,
                                             tip="; ".join(rating.reasons)))
                    else:
                        entries.append(Entry(f"{m} ({free} free memory)", m))
            fill_combo(combo, entries, w.homes.get(key))
            combo.currentIndexChanged.connect(lambda _, k=key, c=combo: self._picked(k, c))
            self.table.setCellWidget(row, 2, combo)
            self.combos[key] = combo
        self.table.resizeColumnsToContents()
        self.changed()

    def _picked(self, key: VmKey, combo: QComboBox) -> None:
        self.w.homes[key] = combo.currentData()
        self.changed()

    def isComplete(self) -> bool:
        return bool(self.combos) and all(current_enabled(c) for c in self.combos.values())


class StoragePage(WizardPage):
    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "storagePage", "Configure storage",
                         "Choose the storage repositories (SRs) on the destination where the "
                         "migrated virtual disks will be placed.")
        self.same = QRadioButton("Place all migrated virtual disks on the &same SR")
        self.same.setObjectName("sameSrRadio")
        self.specific = QRadioButton("Place migrated virtual disks onto &specified SRs")
        self.specific.setObjectName("specificSrRadio")
        group = QButtonGroup(self)
        group.addButton(self.same)
        group.addButton(self.specific)
        self.sr_combo = QComboBox()
        self.sr_combo.setObjectName("sameSrCombo")
        self.sr_combo.setMinimumWidth(320)
        self.table = grid_table("diskSrTable", ["VM", "Virtual disk", "Size",
                                                "Storage repository"])
        self.layout_.addWidget(self.same)
        row = QFormLayout()
        row.setContentsMargins(24, 0, 0, 0)
        row.addRow("Storage repository:", self.sr_combo)
        self.layout_.addLayout(row)
        self.layout_.addWidget(self.specific)
        self.layout_.addWidget(self.table)
        self.finish_layout()
        self.disk_combos: dict[tuple[VmKey, str], QComboBox] = {}
        self._built_for: dict[VmKey, str | None] | None = None
        self.same.toggled.connect(self._mode_changed)
        self.sr_combo.currentIndexChanged.connect(self._same_picked)

    def initializePage(self) -> None:
        w = self.w
        homes = {k: w.home(k) for k in w.vm_keys}
        if homes != self._built_for:  # a new destination: start from its defaults
            self._built_for = homes
            snap = w.engine.snapshot()
            servers = w.home_servers()
            w.sr = default_sr(snap, servers[0]) if servers else None
            w.disk_srs = {}
            for plan in self._plans(snap, sr=w.sr):
                w.disk_srs[plan.vm.key] = {d.dev: d.target_sr for d in plan.disks
                                           if d.target_sr}
            self._build_table(snap)
            with QSignalBlocker(self.same), QSignalBlocker(self.specific):
                self.same.setChecked(w.same_sr)
                self.specific.setChecked(not w.same_sr)
            self._refresh()
            if not current_enabled(self.sr_combo):  # no room on the default SR: the next
                w.sr = next((self.sr_combo.itemData(i) for i in range(self.sr_combo.count())
                             if enabled_at(self.sr_combo, i)), w.sr)
        self._refresh()

    def _plans(self, snap: Snapshot, sr: str | None = None,
               disk_srs: dict[VmKey, dict[str, str]] | None = None) -> list[MigrationPlan]:
        out = []
        for vm in self.w.vms(snap):
            home = self.w.home(vm.key) or ""
            req = MigrationRequest(vm.key, home, sr=sr,
                                   disk_srs=dict((disk_srs or {}).get(vm.key, {})))
            out.append(build_plan(snap, vm, req))
        return out

    def _entry(self, snap: Snapshot, name: str, plans: list[MigrationPlan],
               servers: list[str]) -> Entry:
        """An SR entry; its space is counted over every disk these plans send to it."""
        reason, available = None, None
        for server in servers:
            need = sum(d.capacity for p in plans if p.destination == server
                       for d in p.copied_disks if d.target_sr == name)
            reason = reason or sr_reason(snap, server, name, need)
            sr = snap.sr(server, name)
            if sr is not None:
                available = sr.available if available is None else min(available, sr.available)
        if reason is not None:
            return Entry(f"{name} - {reason}", name, reason)
        return Entry(f"{name}, {format_size(available or 0)} available", name)

    def _sr_names(self, snap: Snapshot, servers: list[str]) -> list[str]:
        sets = [{s.name for s in snap.srs_on(server)} for server in servers]
        return sorted(set.intersection(*sets)) if sets else []

    def _build_table(self, snap: Snapshot) -> None:
        rows = [(vm, d) for vm in self.w.vms(snap) for d in vm.hard_disks]
        self.table.setRowCount(len(rows))
        self.disk_combos = {}
        for i, (vm, disk) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(vm.name))
            self.table.setItem(i, 1, QTableWidgetItem(disk.dev))
            self.table.setItem(i, 2, QTableWidgetItem(format_size(disk.capacity)))
            combo = QComboBox()
            combo.setObjectName(f"sr:{vm.name}:{disk.dev}")
            combo.currentIndexChanged.connect(
                lambda _, k=vm.key, dev=disk.dev, c=combo: self._disk_picked(k, dev, c))
            self.table.setCellWidget(i, 3, combo)
            self.disk_combos[(vm.key, disk.dev)] = combo
        self.table.resizeColumnsToContents()

    def _refresh(self) -> None:
        """Recount every SR entry: the room an SR has left depends on all other choices."""
        w = self.w
        snap = w.engine.snapshot()
        servers = w.home_servers()
        fill_combo(self.sr_combo, [self._entry(snap, n, self._plans(snap, sr=n), servers)
                                   for n in self._sr_names(snap, servers)], w.sr)
        for (key, dev), combo in self.disk_combos.items():
            home = w.home(key)
            entries = []
            for name in self._sr_names(snap, [home] if home else []):
                choice = {k: dict(v) for k, v in w.disk_srs.items()}
                choice.setdefault(key, {})[dev] = name
                entries.append(self._entry(snap, name, self._plans(snap, disk_srs=choice),
                                           [home] if home else []))
            fill_combo(combo, entries, w.disk_srs.get(key, {}).get(dev))
        self.sr_combo.setEnabled(w.same_sr)
        self.table.setEnabled(not w.same_sr)
        self.changed()

    def _mode_changed(self) -> None:
        self.w.same_sr = self.same.isChecked()
        self._refresh()

    def _same_picked(self) -> None:
        self.w.sr = self.sr_combo.currentData()
        self._refresh()

    def _disk_picked(self, key: VmKey, dev: str, combo: QComboBox) -> None:
        self.w.disk_srs.setdefault(key, {})[dev] = combo.currentData()
        self._refresh()

    def isComplete(self) -> bool:
        if self.w.same_sr:
            return current_enabled(self.sr_combo)
        return all(current_enabled(c) for c in self.disk_combos.values())


class NetworkingPage(WizardPage):
    """XenCenter's Networking step: each NIC of each VM onto one of its home server's
    networks or bridges, the one of the same name where the server has it (otherwise the
    operator chooses: Next waits for it)."""

    def __init__(self, wizard: MigrateWizard) -> None:
        super().__init__(wizard, "networkingPage", "Configure networking",
                         "Choose the network or bridge on the destination that each virtual "
                         "network interface is connected to.")
        self.table = grid_table("nicNetworkTable", ["VM", "Interface", "Now on",
                                                    "On the destination"])
        self.table.setAccessibleName("Network interfaces and their destination networks")
        self.layout_.addWidget(self.table)
        self.finish_layout()
        self.nic_combos: dict[tuple[VmKey, str], QComboBox] = {}
        self._built_for: dict[VmKey, str | None] | None = None

    def initializePage(self) -> None:
        w = self.w
        homes = {k: w.home(k) for k in w.vm_keys}
        if homes != self._built_for:  # a new destination: the same names where it has them
            self._built_for = homes
            snap = w.engine.snapshot()
            rows = [(vm, n) for vm in w.vms(snap) for n in vm.nics if n.target]
            self.table.setRowCount(len(rows))
            self.nic_combos = {}
            w.nic_maps = {}
            for i, (vm, nic) in enumerate(rows):
                home = homes.get(vm.key) or ""
                srv = snap.servers.get(home)
                targets = srv.nic_targets if srv is not None else []
                self.table.setItem(i, 0, QTableWidgetItem(vm.name))
                self.table.setItem(i, 1, QTableWidgetItem(
                    f"{nic.mac} ({nic.model})" if nic.model else nic.mac))
                self.table.setItem(i, 2, QTableWidgetItem(nic.described))
                combo = QComboBox()
                combo.setObjectName(f"nic:{vm.name}:{nic.mac}")
                combo.setAccessibleName(f"Destination network of {vm.name}'s NIC {nic.mac}")
                entries = [Entry(describe_nic_target(t), t) for t in targets]
                current = nic.target if nic.target in targets else None
                if current is None and nic.kind == "bridge":
                    # A bridge no network or VM there uses may exist all the same (libvirt
                    # has no safe way to list them): offered, and Review warns.
                    current = nic.target
                    entries.insert(0, Entry(f"{nic.described} (the same name; not seen in "
                                            "use there)", current))
                elif current is None:
                    why = f"'{home}' has no {nic.described}; choose one it has"
                    entries.insert(0, Entry(f"(choose: {why})", None, why))
                fill_combo(combo, entries, current)
                combo.currentIndexChanged.connect(
                    lambda _, k=vm.key, mac=nic.mac, c=combo: self._picked(k, mac, c))
                self.table.setCellWidget(i, 3, combo)
                self.nic_combos[(vm.key, nic.mac)] = combo
                if current is not None:
                    w.nic_maps.setdefault(vm.key, {})[nic.mac] = current
            self.table.resizeColumnsToContents()
        self.changed()

    def _picked(self, key: VmKey, mac: str, combo: QComboBox) -> None:
        if current_enabled(combo):
            self.w.nic_maps.setdefault(key, {})[mac] = combo.currentData()
        self.changed()

    def isComplete(self) -> bool:
        return all(current_enabled(c) for c in self.nic_combos.values())


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
