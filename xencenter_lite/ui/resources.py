"""The Resources pane: pools, servers, SRs and VMs (or folders), with search and drag and drop.

Each view is a tree model rebuilt from every engine snapshot by diffing it against what is
shown (insert, remove, dataChanged; never a reset), so the operator's selection and expanded
nodes survive the constant stream of updates. Rows are identified by keys such as
("vm", (server, uuid)), ("server", name), ("pool", name), ("folder", path) — never by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QByteArray,
    QEvent,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QContextMenuEvent,
    QDrag,
    QDragMoveEvent,
    QDropEvent,
    QPalette,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QMenu,
    QMessageBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.commands import can_migrate_to, can_migrate_to_pool
from xencenter_lite.core.folders import norm_folder, vms_in_folder
from xencenter_lite.core.jobs import Job, JobKind, JobState
from xencenter_lite.core.model import SR, VM, Server, Snapshot, VmState
from xencenter_lite.ui import migrate_menu
from xencenter_lite.ui.bridge import bridge
from xencenter_lite.ui.common import KeyRole, KindRole, format_size, spawn
from xencenter_lite.ui.icons import icon
from xencenter_lite.ui.migrate_menu import migrate_or_open_wizard

if TYPE_CHECKING:
    from xencenter_lite.engine import Engine

NodeKey = tuple[str, Any]
VmKey = tuple[str, str]

INFRASTRUCTURE, FOLDERS = "infrastructure", "folders"
VIEW_NAMES = {INFRASTRUCTURE: "Infrastructure", FOLDERS: "Folder View"}
MIME_VMS = "application/x-xencenter-lite-vms"
SortRole = Qt.ItemDataRole.UserRole + 3
NameRole = Qt.ItemDataRole.UserRole + 4
NO_FOLDER: NodeKey = ("folder", "")
# XenCenter's root node of the Infrastructure view: every pool and server is under it, and
# selecting it shows the home pane (the fleet in numbers).
ROOT: NodeKey = ("root", "")
ROOT_NAME = "XenCenter Lite"
SERVERS_GROUP: NodeKey = ("group", "servers")
_TOP = QModelIndex()  # the invisible root, as a default argument
Index = QModelIndex | QPersistentModelIndex
_PLAIN_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
_VM_FLAGS = _PLAIN_FLAGS | Qt.ItemFlag.ItemIsDragEnabled | Qt.ItemFlag.ItemNeverHasChildren
_DROP_FLAGS = _PLAIN_FLAGS | Qt.ItemFlag.ItemIsDropEnabled
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_DECORATION = int(Qt.ItemDataRole.DecorationRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
_FOREGROUND = int(Qt.ItemDataRole.ForegroundRole)
_KEY, _KIND, _SORT, _NAME = int(KeyRole), int(KindRole), int(SortRole), int(NameRole)


# ---- what a tree should show, computed from a snapshot (pure) ------------------------------
@dataclass(frozen=True, slots=True)
class Row:
    key: NodeKey
    text: str
    icon: str
    name: str  # what the search box matches
    sort: str
    tooltip: str = ""
    dim: bool = False  # greyed out (a disconnected server)


@dataclass
class Spec:
    row: Row
    children: list[Spec] = field(default_factory=list)


_ROOT_ROW = Row(ROOT, ROOT_NAME, "root", ROOT_NAME, "0", "Every pool and server in the inventory")


def vm_row(vm: VM, job: Job | None, where: str = "") -> Row:
    text, badge = vm.name, {VmState.RUNNING: "running", VmState.PAUSED: "paused",
                            VmState.SUSPENDED: "paused"}.get(vm.state, "halted")
    if job is not None and not job.state.finished and job.kind is JobKind.POWER:
        doing = job.title.rsplit(" '", 1)[0]  # "Starting 'web-1'" -> "Starting"
        text = f"{vm.name} ({doing}…)"
    elif job is not None and not job.state.finished:
        verb = "Migrating" if job.kind is JobKind.MIGRATE else "Moving disk"
        if job.state is JobState.QUEUED:
            text = f"{vm.name} ({verb}: queued)"
        else:
            text = f"{vm.name} ({verb} {job.percent:.0f}%)"
        badge = "migrating"
    elif vm.job_running:
        badge = "migrating"
    tip = (f"{vm.name} ({vm.state.value}) on {vm.server}{where}\n"
           f"{format_size(vm.memory)}, {vm.vcpus} vCPU")
    return Row(("vm", vm.key), text, f"vm-{badge}", vm.name, "1" + vm.name.lower() + vm.uuid,
               tip)


def server_row(srv: Server, sort_prefix: str = "1") -> Row:
    if srv.connected and srv.maintenance:
        return Row(("server", srv.name), f"{srv.name} (Maintenance Mode)", "server-maintenance",
                   srv.name, sort_prefix + srv.name.lower(),
                   f"{srv.name}: in maintenance mode: no VM is migrated onto it ({srv.uri})")
    if srv.connected:
        return Row(("server", srv.name), srv.name, "server", srv.name,
                   sort_prefix + srv.name.lower(), f"{srv.name}: connected ({srv.uri})")
    state = f"Disconnected: {srv.error}" if srv.error else "Connecting…"
    text = srv.name if srv.error else f"{srv.name} (Connecting…)"
    return Row(("server", srv.name), text, "server-disconnected", srv.name,
               sort_prefix + srv.name.lower(), f"{srv.name}: {state}", dim=True)


def sr_row(sr: SR, key: NodeKey) -> Row:
    tip = (f"{sr.name} ({sr.type}{', shared' if sr.shared else ''}): "
           f"{format_size(sr.available)} free of {format_size(sr.capacity)}")
    return Row(key, sr.name, "sr", sr.name, "2" + sr.name.lower(), tip)


def _hidden_twins(snap: Snapshot, jobs: dict[VmKey, Job]) -> set[int]:
    """ids of the VMs not shown: while a VM migrates libvirt also lists the paused incoming
    copy on the destination; the operator sees the VM where it runs (the job's source) until
    it moves."""
    hidden: set[int] = set()
    for uuid in snap.uuids_listed_twice():
        twins = snap.vms_with_uuid(uuid)
        best = max(twins, key=lambda v: (v.key in jobs, v.is_running, v.persistent))
        hidden.update(id(v) for v in twins if v is not best)
    return hidden


def visible_vms(snap: Snapshot, jobs: dict[VmKey, Job]) -> list[VM]:
    """Each VM once (see _hidden_twins), in snapshot order."""
    hidden = _hidden_twins(snap, jobs)
    return [vm for vm in snap.vms if id(vm) not in hidden] if hidden else list(snap.vms)


class TreeCache:
    """What the previous tree was made of, so the next one makes again only what changed.

    The engine keeps the objects of the VMs and SRs a new reading did not change, so with a
    snapshot of thousands of VMs, the rows under a server whose VMs and SRs are the very
    same objects as last time (and that has no job or migration copy to show) are reused as
    they were, and so is the row of each unchanged VM. Without a cache (the default) the
    trees are made from scratch; the result is the same."""

    def __init__(self) -> None:
        self._rows: dict[int, tuple[VM, Row]] = {}
        self._servers: dict[str, tuple[tuple[VM, ...], tuple[SR, ...], list[Spec]]] = {}

    def vm_row(self, vm: VM, job: Job | None) -> Row:
        if job is not None and not job.state.finished:
            return vm_row(vm, job)
        hit = self._rows.get(id(vm))
        if hit is not None and hit[0] is vm:
            return hit[1]
        row = vm_row(vm, None)
        self._rows[id(vm)] = (vm, row)  # holding the VM keeps its id from being reused
        return row

    def server_children(self, server: str, vms: tuple[VM, ...], srs: tuple[SR, ...],
                        volatile: bool, make: Callable[[], list[Spec]]) -> list[Spec]:
        old = self._servers.get(server)
        if (not volatile and old is not None and _same_objects(old[0], vms)
                and _same_objects(old[1], srs)):
            return old[2]
        children = make()
        if volatile:
            self._servers.pop(server, None)
        else:
            self._servers[server] = (vms, srs, children)
        return children

    def prune(self, snap: Snapshot) -> None:
        """Forget VMs and servers that are gone (now and then: it costs a pass over all)."""
        if len(self._rows) > 2 * len(snap.vms) + 64:
            live = {id(v) for v in snap.vms}
            self._rows = {i: hit for i, hit in self._rows.items() if i in live}
        for gone in self._servers.keys() - snap.servers.keys():
            del self._servers[gone]


def _same_objects(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def infrastructure_tree(snap: Snapshot, jobs: dict[VmKey, Job],
                        cache: TreeCache | None = None) -> list[Spec]:
    """Pools → servers → VMs and local SRs; shared SRs under their pool; standalone servers
    at the top level."""
    cache = cache or TreeCache()
    hidden = _hidden_twins(snap, jobs)
    volatile = {key[0] for key in jobs}  # servers with a job: rows show its progress
    volatile.update(v.server for u in snap.uuids_listed_twice() for v in snap.vms_with_uuid(u))

    def server_spec(srv: Server) -> Spec:
        vms = tuple(snap.vms_on(srv.name))
        local = tuple(_local_srs(snap, srv.name))

        def make() -> list[Spec]:
            children = [Spec(cache.vm_row(vm, jobs.get(vm.key))) for vm in vms
                        if id(vm) not in hidden]
            children += [Spec(sr_row(sr, ("sr", (sr.server, sr.uuid)))) for sr in local]
            return children

        return Spec(server_row(srv),
                    cache.server_children(srv.name, vms, local, srv.name in volatile, make))

    out: list[Spec] = []
    pooled: set[str] = set()
    for pool in snap.pools.values():
        members = [m for m in pool.members if m in snap.servers]
        pooled.update(members)
        children = [server_spec(snap.servers[m]) for m in members]
        shared: dict[str, SR] = {}
        in_pool = set(members)
        for sr in snap.srs:
            if sr.shared and sr.server in in_pool:
                shared.setdefault(sr.name, sr)
        children += [Spec(sr_row(sr, ("sr", (pool.name, sr.name)))) for sr in shared.values()]
        tip = f"Pool {pool.name}: {', '.join(members)}"
        out.append(Spec(Row(("pool", pool.name), pool.name, "pool", pool.name,
                            "0" + pool.name.lower(), tip), children))
    out += [server_spec(s) for s in snap.servers.values() if s.name not in pooled]
    cache.prune(snap)
    return out


def _local_srs(snap: Snapshot, server: str) -> list[SR]:
    return [sr for sr in snap.srs_on(server) if not sr.shared]


def folder_tree(snap: Snapshot, jobs: dict[VmKey, Job], extra: Iterable[str] = (),
                cache: TreeCache | None = None) -> list[Spec]:
    """Folders (nested by path) with their VMs, "(no folder)" for the rest, and the servers
    (childless) so VMs can still be dropped onto one."""
    cache = cache or TreeCache()
    vms = visible_vms(snap, jobs)
    folder_of = [norm_folder(vm.folder) for vm in vms]
    paths: set[str] = set()
    for path in {norm_folder(v.folder) for v in snap.vms} | {norm_folder(p) for p in extra}:
        parts = [p for p in path.split("/") if p]
        paths.update("/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1))
    nodes = {p: Spec(Row(("folder", p), p.rsplit("/", 1)[1], "folder", p.rsplit("/", 1)[1],
                         "0" + p.rsplit("/", 1)[1].lower(), f"Folder {p}")) for p in paths}
    top: list[Spec] = []
    for path in sorted(paths):
        parent = path.rsplit("/", 1)[0]
        (nodes[parent].children if parent else top).append(nodes[path])
    loose = Spec(Row(NO_FOLDER, "(no folder)", "folder", "(no folder)", "1",
                     "VMs that are in no folder"))
    for vm, path in zip(vms, folder_of, strict=True):
        spec = Spec(cache.vm_row(vm, jobs.get(vm.key)))
        (nodes[path].children if path else loose.children).append(spec)
    servers = Spec(Row(SERVERS_GROUP, "Servers", "group", "Servers", "2",
                       "Drop VMs on a server to migrate them"),
                   [Spec(server_row(s)) for s in snap.servers.values()])
    cache.prune(snap)
    return [*top, loose, servers]


def find_object(snap: Snapshot, key: NodeKey) -> Any:
    """The model object a tree key stands for (VM, Server, Pool, SR, folder path) or None."""
    kind, ident = key
    if kind == "vm":
        return snap.vm(ident)
    if kind == "server":
        return snap.servers.get(ident)
    if kind == "pool":
        return snap.pools.get(ident)
    if kind == "sr":
        owner, name_or_uuid = ident
        if owner in snap.pools:  # a shared SR: (pool, SR name)
            members = snap.pools[owner].members
            return next((s for s in snap.srs if s.shared and s.name == name_or_uuid
                         and s.server in members), None)
        return next((s for s in snap.srs if (s.server, s.uuid) == ident), None)
    if kind == "folder":
        return ident
    return None


# ---- the model ----------------------------------------------------------------------------
def _item_data(row: Row) -> dict[int, Any]:
    """A row's data by role, as the model's item holds it."""
    data: dict[int, Any] = {
        _DISPLAY: row.text, _DECORATION: icon(row.icon), _TOOLTIP: row.tooltip,
        _KEY: row.key, _KIND: row.key[0], _SORT: row.sort, _NAME: row.name,
    }
    # Always set: a row updated in place keeps every role its new data does not name, and
    # a server that connects must not stay grey.
    data[_FOREGROUND] = QBrush(QColor("#808080")) if row.dim else None
    return data


class _Node:
    """The model's own record of a row: what the row shows, and its item in the model."""

    __slots__ = ("children", "item", "parent", "row", "synced")

    def __init__(self, row: Row | None, parent: _Node | None,
                 item: QStandardItem | None) -> None:
        self.row, self.parent, self.item = row, parent, item
        self.children: list[_Node] = []
        self.synced: list[Spec] | None = None  # the specs its children were last made from


class ResourceModel(QStandardItemModel):
    """One view (Infrastructure or Folder View) of the fleet, kept in step with snapshots.

    The rows live in Qt's own item model, so sorting and searching thousands of rows (the
    proxy asks for every row's data, many times) happen in C++ without calling back into
    Python; this class only adds, removes and updates the rows that changed."""

    def __init__(self, mode: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(1)
        self.invisibleRootItem().setFlags(Qt.ItemFlag.NoItemFlags)
        self.mode = mode
        self._root = _Node(None, None, None)
        self._by_key: dict[NodeKey, _Node] = {}
        self._cache = TreeCache()
        self.snapshot: Snapshot | None = None
        # The folders kept apart from their VMs (the engine's: made, or left empty).
        self.folders: Callable[[], Iterable[str]] = frozenset
        self.busy: Callable[[], set[VmKey]] = set
        self.on_drop: Callable[[list[VmKey], NodeKey], None] | None = None

    # ---- updates ------------------------------------------------------------------------
    def apply(self, snap: Snapshot, jobs: dict[VmKey, Job] | None = None) -> None:
        self.snapshot = snap
        jobs = jobs or {}
        if self.mode == FOLDERS:
            specs = folder_tree(snap, jobs, self.folders(), self._cache)
        else:
            specs = [Spec(_ROOT_ROW, infrastructure_tree(snap, jobs, self._cache))]
        self._sync(self._root, specs)

    def _sync(self, node: _Node, specs: list[Spec]) -> None:
        children = node.children
        if len(children) == len(specs) and all(
            c.row.key == s.row.key for c, s in zip(children, specs, strict=True)  # type: ignore[union-attr]
        ):  # the usual update: the same rows; at most some of them changed
            for child, spec in zip(children, specs, strict=True):
                self._update(child, spec)
            return
        item = node.item or self.invisibleRootItem()
        wanted = {s.row.key for s in specs}
        r = len(children) - 1
        while r >= 0:  # remove what went, a run of adjacent rows at a time, from the end
            if children[r].row.key in wanted:  # type: ignore[union-attr]
                r -= 1
                continue
            last = r
            while r > 0 and children[r - 1].row.key not in wanted:  # type: ignore[union-attr]
                r -= 1
            for gone in children[r:last + 1]:
                self._forget(gone)
            del children[r:last + 1]
            item.removeRows(r, last - r + 1)
            r -= 1
        have = {c.row.key: c for c in children}  # type: ignore[union-attr]
        new = []
        for spec in specs:
            found = have.get(spec.row.key)
            if found is None:
                new.append(spec)
            else:
                self._update(found, spec)
        if new:  # new rows go after the others, in the order given, in one insertion
            built = [self._build(spec, node) for spec in new]
            children.extend(built)
            item.appendRows([b.item for b in built if b.item is not None])

    def _update(self, child: _Node, spec: Spec) -> None:
        if child.row is not spec.row and child.row != spec.row:
            self._show(child, spec.row)
        if spec.children is child.synced:
            return  # the very specs it was made from (see TreeCache): nothing changed below
        if spec.children or child.children:
            self._sync(child, spec.children)
        child.synced = spec.children

    def _show(self, node: _Node, row: Row) -> None:
        """New contents for an existing row: one dataChanged."""
        node.row = row
        assert node.item is not None
        QStandardItemModel.setItemData(self, node.item.index(), _item_data(row))

    def update_vm(self, key: VmKey, job: Job | None) -> None:
        """Update one VM's row alone (what a job's progress changes)."""
        node = self._by_key.get(("vm", key))
        vm = self.snapshot.vm(key) if self.snapshot is not None else None
        if node is None or vm is None:
            return
        row = vm_row(vm, job)
        if node.row != row:
            self._show(node, row)

    def _build(self, spec: Spec, parent: _Node) -> _Node:
        row = spec.row
        item = QStandardItem()
        for role, value in _item_data(row).items():
            item.setData(value, role)
        kind = row.key[0]
        item.setFlags(_VM_FLAGS if kind == "vm" else _DROP_FLAGS
                      if kind in ("server", "pool") or (kind == "folder" and self.mode == FOLDERS)
                      else _PLAIN_FLAGS)
        node = _Node(row, parent, item)
        self._by_key[row.key] = node
        if spec.children:
            node.children = [self._build(s, node) for s in spec.children]
            item.appendRows([c.item for c in node.children if c.item is not None])
        node.synced = spec.children
        return node

    def _forget(self, node: _Node) -> None:
        if node.row is not None and self._by_key.get(node.row.key) is node:
            del self._by_key[node.row.key]
        node.item = None  # Qt deletes the item with its row
        for c in node.children:
            self._forget(c)

    # ---- lookups ------------------------------------------------------------------------
    def _node(self, index: Index) -> _Node | None:
        if not index.isValid() or index.model() is not self:
            return None
        return self._by_key.get(index.data(KeyRole))

    def index_of(self, key: NodeKey) -> QModelIndex:
        node = self._by_key.get(key)
        if node is None or node.item is None:
            return QModelIndex()
        return node.item.index()

    def keys(self, parent: NodeKey | None = None) -> list[NodeKey]:
        """Keys of the children of `parent` (top level when None), in model order."""
        node = self._root if parent is None else self._by_key.get(parent)
        return [c.row.key for c in node.children] if node else []  # type: ignore[union-attr]

    def row_for(self, key: NodeKey) -> Row | None:
        node = self._by_key.get(key)
        return node.row if node else None

    # ---- changes come from snapshots only ---------------------------------------------------
    # Views and drops never edit, insert or remove rows (as with a read-only model).
    def setData(self, index: Index, value: Any, role: int = 2) -> bool:
        return False

    def setItemData(self, index: Index, roles: dict[int, Any]) -> bool:
        return False

    def insertRows(self, row: int, count: int, parent: Index = _TOP) -> bool:
        return False

    def removeRows(self, row: int, count: int, parent: Index = _TOP) -> bool:
        return False

    def insertColumns(self, column: int, count: int, parent: Index = _TOP) -> bool:
        return False

    def removeColumns(self, column: int, count: int, parent: Index = _TOP) -> bool:
        return False

    # ---- drag and drop --------------------------------------------------------------------
    # Only MoveAction/CopyAction requests; rows are never removed by a drop (there is no
    # removeRows/setData): a VM's row moves when libvirt reports it on its new server.
    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    def mimeTypes(self) -> list[str]:
        return [MIME_VMS]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData | None:  # type: ignore[override]
        keys: list[VmKey] = []
        for index in indexes:
            node = self._node(index)
            if node and node.row and node.row.key[0] == "vm" and node.row.key[1] not in keys:
                keys.append(node.row.key[1])
        if not keys:
            return None
        data = QMimeData()
        data.setData(MIME_VMS, QByteArray(json.dumps(keys).encode()))
        return data

    def drop_verdict(self, data: QMimeData, parent: Index) -> tuple[bool, str]:
        """(can drop, what the status bar should say) for dropping `data` on `parent`."""
        keys = vm_keys_from(data)
        node = self._node(parent)
        if not keys or node is None or node.row is None or self.snapshot is None:
            return False, ""
        snap = self.snapshot
        names = [vm.name for k in keys if (vm := snap.vm(k)) is not None]
        what = f"'{names[0]}'" if len(names) == 1 else f"{len(keys)} VMs"
        kind, ident = node.row.key
        if kind == "server":
            verdict = can_migrate_to(snap, keys, ident, self.busy())
            if not verdict.ok:
                return False, f"Cannot migrate {what} to '{ident}': {verdict.reason}"
            return True, f"Migrate {what} to '{ident}'"
        if kind == "pool":
            verdict = can_migrate_to_pool(snap, keys, ident, self.busy())
            if not verdict.ok:
                return False, f"Cannot migrate {what} to pool '{ident}': {verdict.reason}"
            return True, f"Migrate {what} to pool '{ident}' (choose the server next)"
        if kind == "folder" and self.mode == FOLDERS:
            label = f"folder '{ident}'" if ident else "no folder"
            vms = [snap.vm(k) for k in keys]
            if all(v is not None and norm_folder(v.folder) == ident for v in vms):
                return False, f"{what} {'is' if len(keys) == 1 else 'are'} already in {label}"
            return True, f"Move {what} to {label}"
        return False, ""

    def canDropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int,
                        parent: Index) -> bool:
        return self.drop_verdict(data, parent)[0]

    def dropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int,
                     parent: Index) -> bool:
        ok, _ = self.drop_verdict(data, parent)
        node = self._node(parent)
        if not ok or node is None or node.row is None:
            return False
        if self.on_drop is not None:
            self.on_drop(vm_keys_from(data), node.row.key)
        return True


def vm_keys_from(data: QMimeData | None) -> list[VmKey]:
    if data is None or not data.hasFormat(MIME_VMS):
        return []
    try:
        raw = json.loads(bytes(data.data(MIME_VMS).data()).decode())
        return [(str(s), str(u)) for s, u in raw]
    except (ValueError, TypeError):
        return []


class ResourceFilter(QSortFilterProxyModel):
    """Sorts (pools, servers, VMs, SRs by name) and filters by the search box, keeping the
    ancestors of every match."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SortRole)
        self.setFilterRole(NameRole)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setRecursiveFilteringEnabled(True)
        self.setDynamicSortFilter(True)


# ---- the view -----------------------------------------------------------------------------
class _DropTargetDelegate(QStyledItemDelegate):
    """Paints the drop target as selected while a drag hovers it (XenCenter's highlight)."""

    def __init__(self, tree: ResourcesTree) -> None:
        super().__init__(tree)
        self.tree = tree

    def initStyleOption(self, option: QStyleOptionViewItem, index: Index) -> None:
        super().initStyleOption(option, index)
        if self.tree.drop_target.isValid() and self.tree.drop_target == index:
            option.state |= QStyle.StateFlag.State_Selected
            option.palette.setColor(QPalette.ColorRole.Text,
                                    option.palette.color(QPalette.ColorRole.HighlightedText))


class ResourcesTree(QTreeView):
    """The tree with XenCenter's drag feedback: the target under the pointer is highlighted
    when it can take the VMs, refused otherwise, and `dropHint` says why."""

    dropHint = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resourcesTree")
        self.setAccessibleName("Resources tree")
        self.setAccessibleDescription(
            "Pools, servers, their VMs and storage. Drag a VM onto a server or a pool to "
            "migrate it; Shift+F10 or the Menu key opens the selected row's menu.")
        self.setHeaderHidden(True)
        self.setUniformRowHeights(True)
        self.setSelectionMode(QTreeView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QTreeView.DragDropMode.DragDrop)
        self.setDragDropOverwriteMode(True)  # drop on items only, never between rows
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setAutoExpandDelay(600)
        self.drop_target = QPersistentModelIndex()
        self.setItemDelegate(_DropTargetDelegate(self))

    def event(self, event: QEvent) -> bool:
        """From the keyboard (Shift+F10, the Menu key) the menu is the current row's, shown
        at that row, not wherever the pointer happens to be."""
        if (isinstance(event, QContextMenuEvent)
                and event.reason() is QContextMenuEvent.Reason.Keyboard
                and self.currentIndex().isValid()):
            rect = self.visualRect(self.currentIndex())
            self.customContextMenuRequested.emit(rect.bottomLeft() + QPoint(rect.height(), 0))
            event.accept()
            return True
        return super().event(event)

    def _source(self) -> tuple[ResourceModel | None, Callable[[QModelIndex], QModelIndex]]:
        proxy = self.model()
        if isinstance(proxy, QSortFilterProxyModel):
            src = proxy.sourceModel()
            return (src if isinstance(src, ResourceModel) else None), proxy.mapToSource
        return (proxy if isinstance(proxy, ResourceModel) else None), lambda i: i

    def _set_target(self, index: QModelIndex | None) -> None:
        old = QPersistentModelIndex(self.drop_target)
        self.drop_target = QPersistentModelIndex(index) if index is not None else \
            QPersistentModelIndex()
        for i in (old, index):
            if i is not None and i.isValid():
                self.update(i)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        super().dragMoveEvent(event)  # asks the model's canDropMimeData, accepts or ignores
        model, to_source = self._source()
        index = self.indexAt(event.position().toPoint())
        ok, hint = (model.drop_verdict(event.mimeData(), to_source(index)) if model
                    else (False, ""))
        self._set_target(index if ok else None)
        if not ok:
            event.ignore()
        self.dropHint.emit(hint)

    def dragLeaveEvent(self, event: Any) -> None:
        super().dragLeaveEvent(event)
        self._set_target(None)
        self.dropHint.emit("")

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_target(None)
        self.dropHint.emit("")
        super().dropEvent(event)

    def startDrag(self, actions: Qt.DropAction) -> None:
        # Our own QDrag so nothing is ever removed from the source afterwards.
        indexes = [i for i in self.selectedIndexes()
                   if i.flags() & Qt.ItemFlag.ItemIsDragEnabled]
        data = self.model().mimeData(indexes) if indexes else None
        if data is None:
            return
        drag = QDrag(self)
        drag.setMimeData(data)
        drag.setPixmap(icon("vm-running").pixmap(24, 24))
        drag.exec(Qt.DropAction.MoveAction | Qt.DropAction.CopyAction, Qt.DropAction.MoveAction)


def follow_engine(engine: Any, on_snapshot: Callable[[Snapshot], None],
                  on_job: Callable[[Job], None] | None = None) -> None:
    """Connect a widget's slots to the engine's news (through its EngineBridge): they stop
    being called when the widget goes."""
    news = bridge(engine)
    news.snapshotChanged.connect(on_snapshot)
    if on_job is not None:
        news.jobChanged.connect(on_job)


class ResourcesPane(QWidget):
    """Search box, view selector and tree; owns one model per view."""

    selectionChanged = Signal()
    message = Signal(str)  # for the status bar
    viewChanged = Signal(str)

    def __init__(self, engine: Engine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.vm_menu_hook: Callable[[QMenu], None] | None = None
        self.server_menu_hook: Callable[[QMenu, str], None] | None = None
        self.pool_menu_hook: Callable[[QMenu], None] | None = None
        self.sr_menu_hook: Callable[[QMenu], None] | None = None
        self._jobs: dict[VmKey, Job] = {}
        self.models = {m: ResourceModel(m, self) for m in (INFRASTRUCTURE, FOLDERS)}
        for model in self.models.values():
            model.busy = lambda: set(getattr(engine, "busy", set()))
            model.folders = engine.folders
            model.on_drop = self._dropped
        self.proxy = ResourceFilter(self)

        self.search = QLineEdit(self)
        self.search.setObjectName("searchBox")
        self.search.setAccessibleName("Search resources")
        self.search.setPlaceholderText("Search…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._search)

        self.view_selector = QComboBox(self)
        self.view_selector.setObjectName("viewSelector")
        self.view_selector.setAccessibleName("Resources view")
        for mode, label in VIEW_NAMES.items():
            self.view_selector.addItem(label, mode)
        self.view_selector.currentIndexChanged.connect(
            lambda i: self.set_view(self.view_selector.itemData(i)))

        self.new_folder_button = QToolButton(self)
        self.new_folder_button.setObjectName("newFolderButton")
        self.new_folder_button.setIcon(icon("folder"))
        self.new_folder_button.setToolTip("New Folder…")
        self.new_folder_button.setAccessibleName("New Folder")
        self.new_folder_button.clicked.connect(self.new_folder)

        self.tree = ResourcesTree(self)
        self.tree.setModel(self.proxy)
        self.tree.dropHint.connect(self.message)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.proxy.rowsInserted.connect(self._expand_new)

        top = QHBoxLayout()
        top.addWidget(self.view_selector, 1)
        top.addWidget(self.new_folder_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.search)
        layout.addWidget(self.tree, 1)

        self.mode = ""
        # (collapsed rows, selection, current row) as they were when a search began.
        self._before_search: tuple[set[NodeKey], list[NodeKey], NodeKey | None] | None = None
        self._latest: Snapshot | None = None
        self._stale: set[str] = set()  # views behind the engine (not on show)
        self._apply(engine.snapshot())
        self.set_view(INFRASTRUCTURE)
        follow_engine(engine, self._on_snapshot, self._on_job)

    # ---- engine updates -----------------------------------------------------------------
    def _on_snapshot(self, snap: Snapshot) -> None:
        self._apply(snap)

    def _on_job(self, job: Job) -> None:
        shown = self._jobs.get(job.vm_key) is job
        if job.state.finished:
            if shown:
                del self._jobs[job.vm_key]
        else:
            self._jobs[job.vm_key] = job
        if shown and not job.state.finished and self._latest is not None:
            # Progress of a job already shown: only its VM's row can change.
            for mode, model in self.models.items():
                if mode == self.mode:
                    model.update_vm(job.vm_key, job)
                else:
                    self._stale.add(mode)
            return
        self._apply(self.engine.snapshot())

    def _apply(self, snap: Snapshot) -> None:
        selected = self.selected_keys()
        current = self.current_key()
        # Only the view on show follows every update; the other catches up when chosen.
        self._latest = snap
        for mode, model in self.models.items():
            if mode == self.mode:
                model.apply(snap, self._jobs)
            else:
                self._stale.add(mode)
        # A migrated VM gets a new key (new server): keep it selected where it now runs.
        for key in selected:
            if key[0] == "vm" and not self.index_of(key).isValid():
                moved = next(iter(snap.vms_with_uuid(key[1][1])), None)
                if moved is not None:
                    self.select(("vm", moved.key), add=True, make_current=key == current)

    # ---- view and selection -----------------------------------------------------------
    @property
    def model(self) -> ResourceModel:
        return self.models[self.mode]

    def set_view(self, mode: str) -> None:
        """Show the other view; what was selected stays selected where that view shows it
        (VMs and servers are in both)."""
        if mode == self.mode or mode not in self.models:
            return
        kept, current = self.selected_keys(), self.current_key()
        self.mode = mode
        if mode in self._stale and self._latest is not None:
            self._stale.discard(mode)
            self.models[mode].apply(self._latest, self._jobs)
        self.proxy.setSourceModel(self.models[mode])
        self.proxy.sort(0)
        sel = self.tree.selectionModel()
        sel.selectionChanged.connect(self.selectionChanged)
        sel.currentChanged.connect(self.selectionChanged)
        self.tree.expandAll()
        for key in kept:
            self.select(key, add=True, make_current=key == current)
        self.new_folder_button.setVisible(mode == FOLDERS)
        i = self.view_selector.findData(mode)
        if i != self.view_selector.currentIndex():
            self.view_selector.setCurrentIndex(i)
        self.viewChanged.emit(mode)
        self.selectionChanged.emit()

    def _expand_new(self, parent: QModelIndex, first: int, last: int) -> None:
        """New containers (a server that just connected, a new folder) open expanded."""
        for r in range(first, last + 1):
            index = self.proxy.index(r, 0, parent)
            if index.data(KindRole) != "vm":
                self.tree.expand(index)

    def _search(self, text: str) -> None:
        """Filter as typed, everything found shown open; cleared, the tree is as the operator
        left it before searching: the same rows collapsed, the same selection, unless they
        chose something among the results (that stays chosen)."""
        text = text.strip()
        if text and self._before_search is None:
            self._before_search = (self._collapsed(), self.selected_keys(), self.current_key())
        if not text and self._before_search is not None:
            collapsed, selected, current = self._before_search
            self._before_search = None
            during, now = self.selected_keys(), self.current_key()
            self.proxy.setFilterFixedString("")
            self._expand_all_but(collapsed)
            if not set(during) <= set(selected):  # picked among the results: keep that
                selected, current = during, now
            self.tree.selectionModel().clearSelection()
            for key in selected:
                self.select(key, add=True, make_current=key == current)
            if current is not None and current in selected:
                self.tree.scrollTo(self.index_of(current))
            return
        self.proxy.setFilterFixedString(text)
        if text:
            self.tree.expandAll()

    def _containers(self, parent: QModelIndex | None = None) -> Iterable[QModelIndex]:
        parent = parent if parent is not None else QModelIndex()
        for r in range(self.proxy.rowCount(parent)):
            index = self.proxy.index(r, 0, parent)
            if self.proxy.hasChildren(index):
                yield index
                yield from self._containers(index)

    def _collapsed(self) -> set[NodeKey]:
        return {i.data(KeyRole) for i in self._containers() if not self.tree.isExpanded(i)}

    def _expand_all_but(self, collapsed: set[NodeKey]) -> None:
        for index in list(self._containers()):
            self.tree.setExpanded(index, index.data(KeyRole) not in collapsed)

    def index_of(self, key: NodeKey) -> QModelIndex:
        """The proxy (view) index of `key` in the current view; invalid if hidden or gone."""
        return self.proxy.mapFromSource(self.model.index_of(key))

    def selected_keys(self) -> list[NodeKey]:
        sel = self.tree.selectionModel()
        if sel is None:
            return []
        return [i.data(KeyRole) for i in sel.selectedRows() if i.data(KeyRole) is not None]

    def current_key(self) -> NodeKey | None:
        index = self.tree.currentIndex()
        return index.data(KeyRole) if index.isValid() else None

    def selected_vm_keys(self) -> list[VmKey]:
        return [k[1] for k in self.selected_keys() if k[0] == "vm"]

    def select(self, key: NodeKey, add: bool = False, make_current: bool = True) -> bool:
        index = self.index_of(key)
        if not index.isValid():
            return False
        sel = self.tree.selectionModel()
        flags = sel.SelectionFlag.Select | sel.SelectionFlag.Rows
        if not add:
            flags |= sel.SelectionFlag.Clear
        if make_current:
            sel.setCurrentIndex(index, flags)
        else:
            sel.select(index, flags)
        self.tree.scrollTo(index)
        return True

    # ---- drops ----------------------------------------------------------------------------
    def _dropped(self, keys: list[VmKey], target: NodeKey) -> None:
        # Act after the drop event has returned: the drop itself must not change the model.
        QTimer.singleShot(0, lambda: self._act_on_drop(keys, target))

    def _act_on_drop(self, keys: list[VmKey], target: NodeKey) -> None:
        kind, ident = target
        if kind == "server":
            migrate_or_open_wizard(self.engine, keys, ident, self.window())
        elif kind == "pool":
            migrate_menu.open_wizard(self.engine, keys, ident, self.window())
        elif kind == "folder":
            spawn(self.move_to_folder(keys, ident))

    # ---- folders --------------------------------------------------------------------------
    async def move_to_folder(self, keys: list[VmKey], path: str) -> None:
        path = norm_folder(path)
        for key in keys:
            vm = self.engine.snapshot().vm(key)
            if vm is None or norm_folder(vm.folder) == path:
                continue
            try:
                await self.engine.set_folder(key, path)
            except Exception as exc:
                self.message.emit(f"Could not move '{vm.name}' to {path or 'no folder'}: {exc}")
                return
        self.message.emit(f"Moved to {('folder ' + repr(path)) if path else 'no folder'}")

    def selected_folder(self) -> str | None:
        key = self.current_key()
        return key[1] if key and key[0] == "folder" and key[1] else None

    def create_folder(self, name: str, under: str | None = None) -> str | None:
        """Add an empty folder (kept, as every folder, until it is deleted)."""
        name = name.strip()
        if not name or "/" in name:
            self.message.emit("A folder name cannot be empty or contain '/'.")
            return None
        try:
            path = self.engine.add_folder(f"{under or ''}/{name}")
        except (OSError, ValueError) as exc:
            self.message.emit(f"Could not make the folder: {exc}")
            return None
        model = self.models[FOLDERS]
        model.apply(self.engine.snapshot(), self._jobs)
        self.set_view(FOLDERS)
        self.select(("folder", path))
        return path

    def new_folder(self) -> QInputDialog:
        under = self.selected_folder()
        where = f" in {under}" if under else ""
        dialog = self._ask("New Folder", f"Name of the new folder{where}:", "New Folder",
                           lambda name: self.create_folder(name, under))
        dialog.setObjectName("newFolderDialog")
        return dialog

    def rename_folder(self) -> QInputDialog | None:
        old = self.selected_folder()
        if old is None:
            return None
        dialog = self._ask("Rename Folder", f"New name for {old}:", old.rsplit("/", 1)[1],
                           lambda name: spawn(self.rename_folder_to(old, name)))
        dialog.setObjectName("renameFolderDialog")
        return dialog

    async def rename_folder_to(self, old: str, name: str) -> None:
        """Rename `old` (and everything under it): the engine rewrites the folder of each VM
        in it."""
        name = name.strip()
        if not name or "/" in name:
            self.message.emit("A folder name cannot be empty or contain '/'.")
            return
        new = norm_folder(old.rsplit("/", 1)[0] + "/" + name)
        try:
            await self.engine.rename_folder(old, new)
        except Exception as exc:
            self.message.emit(f"Could not rename {old}: {exc}")
            return
        self.models[FOLDERS].apply(self.engine.snapshot(), self._jobs)
        self.select(("folder", new))
        self.message.emit(f"Renamed {old} to {new}")

    def delete_folder(self) -> QMessageBox | None:
        """Delete the selected folder and those in it, after asking; the VMs in them go to
        no folder (they are not touched otherwise)."""
        folder = self.selected_folder()
        if folder is None:
            return None
        vms = [vm.name for vm in vms_in_folder(self.engine.snapshot().vms, folder)]
        text = f"Delete the folder {folder} and every folder in it?"
        if vms:
            text += (f" The {len(vms)} VM(s) in them ({', '.join(sorted(vms)[:5])}"
                     f"{', …' if len(vms) > 5 else ''}) go to no folder; nothing else "
                     "changes for them.")
        box = QMessageBox(QMessageBox.Icon.Question, "Delete Folder", text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setObjectName("confirmDeleteFolder")
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r: spawn(self.delete_folder_now(folder)) if
                             box.clickedButton() is box.button(QMessageBox.StandardButton.Yes)
                             else None)
        box.open()
        return box

    async def delete_folder_now(self, folder: str) -> None:
        try:
            moved = await self.engine.delete_folder(folder)
        except Exception as exc:
            self.message.emit(f"Could not delete {folder}: {exc}")
            return
        self.models[FOLDERS].apply(self.engine.snapshot(), self._jobs)
        self.message.emit(f"Deleted {folder}" + (f"; {moved} VM(s) are in no folder now"
                                                 if moved else ""))

    def _ask(self, title: str, label: str, text: str,
             then: Callable[[str], Any]) -> QInputDialog:
        dialog = QInputDialog(self)
        dialog.setWindowTitle(title)
        dialog.setLabelText(label)
        dialog.setTextValue(text)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.textValueSelected.connect(then)
        dialog.open()
        return dialog

    # ---- context menu ---------------------------------------------------------------------
    def context_menu(self, key: NodeKey | None) -> QMenu:
        menu = QMenu(self)
        if key is not None and key[0] == "vm" and self.vm_menu_hook is not None:
            self.vm_menu_hook(menu)
        if key is not None and key[0] == "server" and self.server_menu_hook is not None:
            self.server_menu_hook(menu, key[1])
        if key is not None and key[0] == "pool" and self.pool_menu_hook is not None:
            self.pool_menu_hook(menu)
        if key is not None and key[0] == "sr" and self.sr_menu_hook is not None:
            self.sr_menu_hook(menu)
        if self.mode == FOLDERS:
            if not menu.isEmpty():
                menu.addSeparator()
            menu.addAction("New Folder…", self.new_folder)
            rename = menu.addAction("Rename Folder…", self.rename_folder)
            rename.setEnabled(self.selected_folder() is not None)
            delete = menu.addAction("Delete Folder…", self.delete_folder)
            delete.setEnabled(self.selected_folder() is not None)
        return menu

    def _context_menu(self, pos: Any) -> None:
        index = self.tree.indexAt(pos)
        menu = self.context_menu(index.data(KeyRole) if index.isValid() else None)
        if not menu.isEmpty():
            menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            menu.popup(self.tree.viewport().mapToGlobal(pos))

