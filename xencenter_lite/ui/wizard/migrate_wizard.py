"""The wizard itself: the choices shared by every page, the background checks, the page
order.
"""

from __future__ import annotations

from typing import Any

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QLabel,
    QWidget,
    QWizard,
)

from xencenter_lite.core.checks import Code, Problem, nic_problems
from xencenter_lite.core.jobs import Job
from xencenter_lite.core.model import VM, Snapshot, VmState
from xencenter_lite.core.placement import Rating, place_together, rate
from xencenter_lite.core.plan import (
    MigrationKind,
    MigrationPlan,
    MigrationRequest,
    build_plan,
)
from xencenter_lite.core.policy import (
    MigrationSettings,
)
from xencenter_lite.core.reasons import STORAGE_CODES
from xencenter_lite.ui.bridge import bridge
from xencenter_lite.ui.common import show_non_modal, spawn, star_text
from xencenter_lite.ui.wizard.common import (
    DESTINATION,
    HOME_SERVER,
    NETWORKING,
    REVIEW,
    STEP_NAMES,
    STORAGE,
    STORAGE_NETWORK,
    Target,
    VmKey,
    targets_of,
)
from xencenter_lite.ui.wizard.destination import DestinationPage
from xencenter_lite.ui.wizard.home_server import HomeServerPage
from xencenter_lite.ui.wizard.networking import NetworkingPage
from xencenter_lite.ui.wizard.review import ReviewPage
from xencenter_lite.ui.wizard.storage import StoragePage
from xencenter_lite.ui.wizard.storage_network import StorageNetworkPage


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

        bridge(engine).snapshotChanged.connect(self._snapshot_changed)

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
