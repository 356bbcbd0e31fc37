"""The Resources pane: pools, servers, SRs and VMs (or folders), with search and drag and drop.

Each view is a tree model rebuilt from every engine snapshot by diffing it against what is
shown (insert, remove, dataChanged; never a reset), so the operator's selection and expanded
nodes survive the constant stream of updates. Rows are identified by keys such as
("vm", (server, uuid)), ("server", name), ("pool", name), ("folder", path) — never by name.
"""

from __future__ import annotations

import itertools
import json
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import (
    QAbstractItemModel,
    QByteArray,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QDrag, QDragMoveEvent, QDropEvent, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.jobs import Job, JobKind, JobState
from xencenter_lite.core.model import SR, VM, Server, Snapshot, VmState
from xencenter_lite.ui.common import KeyRole, KindRole, format_size, spawn
from xencenter_lite.ui.icons import icon
from xencenter_lite.ui.migrate_menu import drop_refusal, migrate_or_open_wizard

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
SERVERS_GROUP: NodeKey = ("group", "servers")
_TOP = QModelIndex()  # the invisible root, as a default argument


# ---- what a tree should show, computed from a snapshot (pure) ------------------------------
@dataclass(frozen=True)
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


def norm_folder(path: str) -> str:
    """"Web", "/Web/" and "/Web" are the same folder: "/Web"; no folder is ""."""
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts) if parts else ""


def vm_row(vm: VM, job: Job | None, where: str = "") -> Row:
    text, badge = vm.name, {VmState.RUNNING: "running", VmState.PAUSED: "paused",
                            VmState.SUSPENDED: "paused"}.get(vm.state, "halted")
    if job is not None and not job.state.finished:
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


def visible_vms(snap: Snapshot, jobs: dict[VmKey, Job]) -> list[VM]:
    """Each VM once: while it migrates libvirt also lists the paused incoming copy on the
    destination; the operator sees the VM where it runs (the job's source) until it moves."""
    by_uuid: dict[str, list[VM]] = {}
    for vm in snap.vms:
        by_uuid.setdefault(vm.uuid, []).append(vm)
    out = []
    for vm in snap.vms:
        twins = by_uuid[vm.uuid]
        if len(twins) == 1:
            out.append(vm)
            continue
        best = max(twins, key=lambda v: (v.key in jobs, v.is_running, v.persistent))
        if vm is best:
            out.append(vm)
    return out


def infrastructure_tree(snap: Snapshot, jobs: dict[VmKey, Job]) -> list[Spec]:
    """Pools → servers → VMs and local SRs; shared SRs under their pool; standalone servers
    at the top level."""
    vms = visible_vms(snap, jobs)

    def server_spec(srv: Server) -> Spec:
        children = [Spec(vm_row(vm, jobs.get(vm.key))) for vm in vms if vm.server == srv.name]
        children += [Spec(sr_row(sr, ("sr", (sr.server, sr.uuid))))
                     for sr in _local_srs(snap, srv.name)]
        return Spec(server_row(srv), children)

    out: list[Spec] = []
    pooled: set[str] = set()
    for pool in snap.pools.values():
        members = [m for m in pool.members if m in snap.servers]
        pooled.update(members)
        children = [server_spec(snap.servers[m]) for m in members]
        shared: dict[str, SR] = {}
        for sr in snap.srs:
            if sr.shared and sr.server in members:
                shared.setdefault(sr.name, sr)
        children += [Spec(sr_row(sr, ("sr", (pool.name, sr.name)))) for sr in shared.values()]
        tip = f"Pool {pool.name}: {', '.join(members)}"
        out.append(Spec(Row(("pool", pool.name), pool.name, "pool", pool.name,
                            "0" + pool.name.lower(), tip), children))
    out += [server_spec(s) for s in snap.servers.values() if s.name not in pooled]
    return out


def _local_srs(snap: Snapshot, server: str) -> list[SR]:
    return [sr for sr in snap.srs_on(server) if not sr.shared]


def folder_tree(snap: Snapshot, jobs: dict[VmKey, Job], extra: Iterable[str] = ()) -> list[Spec]:
    """Folders (nested by path) with their VMs, "(no folder)" for the rest, and the servers
    (childless) so VMs can still be dropped onto one."""
    paths: set[str] = set()
    for path in [norm_folder(v.folder) for v in snap.vms] + [norm_folder(p) for p in extra]:
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
    for vm in visible_vms(snap, jobs):
        path = norm_folder(vm.folder)
        spec = Spec(vm_row(vm, jobs.get(vm.key)))
        (nodes[path].children if path else loose.children).append(spec)
    servers = Spec(Row(SERVERS_GROUP, "Servers", "group", "Servers", "2",
                       "Drop VMs on a server to migrate them"),
                   [Spec(server_row(s)) for s in snap.servers.values()])
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
class _Node:
    __slots__ = ("children", "id", "parent", "row")

    def __init__(self, node_id: int, row: Row | None, parent: _Node | None) -> None:
        self.id, self.row, self.parent = node_id, row, parent
        self.children: list[_Node] = []


class ResourceModel(QAbstractItemModel):
    """One view (Infrastructure or Folder View) of the fleet, kept in step with snapshots."""

    def __init__(self, mode: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = mode
        self._ids = itertools.count(1)
        self._root = _Node(0, None, None)
        self._nodes: dict[int, _Node] = {}  # internalId -> node; stale indexes find nothing
        self._by_key: dict[NodeKey, _Node] = {}
        self.snapshot: Snapshot | None = None
        self.extra_folders: set[str] = set()  # new, still empty folders (Folder View)
        self.busy: Callable[[], set[VmKey]] = set
        self.on_drop: Callable[[list[VmKey], NodeKey], None] | None = None

    # ---- updates ------------------------------------------------------------------------
    def apply(self, snap: Snapshot, jobs: dict[VmKey, Job] | None = None) -> None:
        self.snapshot = snap
        jobs = jobs or {}
        if self.mode == FOLDERS:
            used = {norm_folder(v.folder) for v in snap.vms}
            self.extra_folders = {f for f in self.extra_folders
                                  if not any(u == f or u.startswith(f + "/") for u in used)}
            specs = folder_tree(snap, jobs, self.extra_folders)
        else:
            specs = infrastructure_tree(snap, jobs)
        self._sync(self._root, QModelIndex(), specs)

    def _sync(self, node: _Node, index: QModelIndex, specs: list[Spec]) -> None:
        wanted = {s.row.key for s in specs}
        for r in reversed(range(len(node.children))):
            if node.children[r].row.key not in wanted:  # type: ignore[union-attr]
                self.beginRemoveRows(index, r, r)
                self._forget(node.children.pop(r))
                self.endRemoveRows()
        have = {c.row.key: c for c in node.children}  # type: ignore[union-attr]
        for spec in specs:
            child = have.get(spec.row.key)
            if child is None:
                r = len(node.children)
                self.beginInsertRows(index, r, r)
                node.children.append(self._build(spec, node))
                self.endInsertRows()
                continue
            child_index = self.createIndex(node.children.index(child), 0, child.id)
            if child.row != spec.row:
                child.row = spec.row
                self.dataChanged.emit(child_index, child_index)
            self._sync(child, child_index, spec.children)

    def _build(self, spec: Spec, parent: _Node) -> _Node:
        node = _Node(next(self._ids), spec.row, parent)
        self._nodes[node.id] = node
        self._by_key[spec.row.key] = node
        node.children = [self._build(s, node) for s in spec.children]
        return node

    def _forget(self, node: _Node) -> None:
        self._nodes.pop(node.id, None)
        if node.row is not None and self._by_key.get(node.row.key) is node:
            del self._by_key[node.row.key]
        for c in node.children:
            self._forget(c)

    # ---- lookups ------------------------------------------------------------------------
    def _node(self, index: QModelIndex) -> _Node | None:
        if not index.isValid():
            return None
        return self._nodes.get(index.internalId())

    def index_of(self, key: NodeKey) -> QModelIndex:
        node = self._by_key.get(key)
        if node is None or node.parent is None:
            return QModelIndex()
        return self.createIndex(node.parent.children.index(node), 0, node.id)

    def keys(self, parent: NodeKey | None = None) -> list[NodeKey]:
        """Keys of the children of `parent` (top level when None), in model order."""
        node = self._root if parent is None else self._by_key.get(parent)
        return [c.row.key for c in node.children] if node else []  # type: ignore[union-attr]

    def row_for(self, key: NodeKey) -> Row | None:
        node = self._by_key.get(key)
        return node.row if node else None

    # ---- QAbstractItemModel -------------------------------------------------------------
    def index(self, row: int, column: int, parent: QModelIndex = _TOP) -> QModelIndex:
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        node = self._node(parent) if parent.isValid() else self._root
        if node is None:
            return QModelIndex()
        return self.createIndex(row, column, node.children[row].id)

    def parent(self, index: QModelIndex = _TOP) -> QModelIndex:  # type: ignore[override]
        node = self._node(index)
        if node is None or node.parent is None or node.parent is self._root:
            return QModelIndex()
        up = node.parent
        assert up.parent is not None
        return self.createIndex(up.parent.children.index(up), 0, up.id)

    def rowCount(self, parent: QModelIndex = _TOP) -> int:
        if parent.column() > 0:
            return 0
        node = self._node(parent) if parent.isValid() else self._root
        return len(node.children) if node else 0

    def columnCount(self, parent: QModelIndex = _TOP) -> int:
        return 1

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        node = self._node(index)
        if node is None or node.row is None:
            return None
        row = node.row
        if role == Qt.ItemDataRole.DisplayRole:
            return row.text
        if role == Qt.ItemDataRole.DecorationRole:
            return icon(row.icon)
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.tooltip
        if role == Qt.ItemDataRole.ForegroundRole and row.dim:
            return QBrush(QColor("#808080"))
        return {KeyRole: row.key, KindRole: row.key[0], SortRole: row.sort,
                NameRole: row.name}.get(role)

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        node = self._node(index)
        if node is None or node.row is None:
            return Qt.ItemFlag.NoItemFlags
        f = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        kind = node.row.key[0]
        if kind == "vm":
            f |= Qt.ItemFlag.ItemIsDragEnabled | Qt.ItemFlag.ItemNeverHasChildren
        elif kind == "server" or (kind == "folder" and self.mode == FOLDERS):
            f |= Qt.ItemFlag.ItemIsDropEnabled
        return f

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

    def drop_verdict(self, data: QMimeData, parent: QModelIndex) -> tuple[bool, str]:
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
            problem = drop_refusal(snap, keys, ident, self.busy())
            if problem is not None:
                return False, f"Cannot migrate {what} to '{ident}': {problem.message}"
            return True, f"Migrate {what} to '{ident}'"
        if kind == "folder" and self.mode == FOLDERS:
            label = f"folder '{ident}'" if ident else "no folder"
            vms = [snap.vm(k) for k in keys]
            if all(v is not None and norm_folder(v.folder) == ident for v in vms):
                return False, f"{what} {'is' if len(keys) == 1 else 'are'} already in {label}"
            return True, f"Move {what} to {label}"
        return False, ""

    def canDropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int,
                        parent: QModelIndex) -> bool:
        return self.drop_verdict(data, parent)[0]

    def dropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int,
                     parent: QModelIndex) -> bool:
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

    def initStyleOption(self, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        super().initStyleOption(option, index)
        if self.tree.drop_target.isValid() and index == QModelIndex(self.tree.drop_target):
            option.state |= QStyle.StateFlag.State_Selected  # type: ignore[operator]
            option.palette.setColor(QPalette.ColorRole.Text,
                                    option.palette.color(QPalette.ColorRole.HighlightedText))


class ResourcesTree(QTreeView):
    """The tree with XenCenter's drag feedback: the target under the pointer is highlighted
    when it can take the VMs, refused otherwise, and `dropHint` says why."""

    dropHint = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resourcesTree")
        self.setAccessibleName("resourcesTree")
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

    def _source(self) -> tuple[ResourceModel | None, Callable[[QModelIndex], QModelIndex]]:
        proxy = self.model()
        if isinstance(proxy, QSortFilterProxyModel):
            src = proxy.sourceModel()
            return (src if isinstance(src, ResourceModel) else None), proxy.mapToSource
        return (proxy if isinstance(proxy, ResourceModel) else None), lambda i: i

    def _set_target(self, index: QModelIndex | None) -> None:
        old = QModelIndex(self.drop_target)
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
    """Subscribe a widget's bound methods to the engine, which outlives widgets and has no
    unsubscribe: calls stop once the widget is gone."""

    def weak(method: Callable[[Any], None]) -> Callable[[Any], None]:
        ref = weakref.WeakMethod(method)

        def forward(value: Any) -> None:
            fn = ref()
            if fn is not None and shiboken6.isValid(fn.__self__):
                fn(value)

        return forward

    engine.subscribe(weak(on_snapshot))
    if on_job is not None:
        engine.subscribe_jobs(weak(on_job))


class ResourcesPane(QWidget):
    """Search box, view selector and tree; owns one model per view."""

    selectionChanged = Signal()
    message = Signal(str)  # for the status bar
    viewChanged = Signal(str)

    def __init__(self, engine: Engine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.vm_menu_hook: Callable[[QMenu], None] | None = None
        self._jobs: dict[VmKey, Job] = {}
        self.models = {m: ResourceModel(m, self) for m in (INFRASTRUCTURE, FOLDERS)}
        for model in self.models.values():
            model.busy = lambda: set(getattr(engine, "busy", set()))
            model.on_drop = self._dropped
        self.proxy = ResourceFilter(self)

        self.search = QLineEdit(self)
        self.search.setObjectName("searchBox")
        self.search.setAccessibleName("searchBox")
        self.search.setPlaceholderText("Search…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._search)

        self.view_selector = QComboBox(self)
        self.view_selector.setObjectName("viewSelector")
        self.view_selector.setAccessibleName("viewSelector")
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
        self._apply(engine.snapshot())
        self.set_view(INFRASTRUCTURE)
        follow_engine(engine, self._on_snapshot, self._on_job)

    # ---- engine updates -----------------------------------------------------------------
    def _on_snapshot(self, snap: Snapshot) -> None:
        self._apply(snap)

    def _on_job(self, job: Job) -> None:
        if job.state.finished:
            if self._jobs.get(job.vm_key) is job:
                del self._jobs[job.vm_key]
        else:
            self._jobs[job.vm_key] = job
        self._apply(self.engine.snapshot())

    def _apply(self, snap: Snapshot) -> None:
        selected = self.selected_keys()
        current = self.current_key()
        for model in self.models.values():
            model.apply(snap, self._jobs)
        # A migrated VM gets a new key (new server): keep it selected where it now runs.
        for key in selected:
            if key[0] == "vm" and not self.index_of(key).isValid():
                moved = next((v for v in snap.vms if v.uuid == key[1][1]), None)
                if moved is not None:
                    self.select(("vm", moved.key), add=True, make_current=key == current)

    # ---- view and selection -----------------------------------------------------------
    @property
    def model(self) -> ResourceModel:
        return self.models[self.mode]

    def set_view(self, mode: str) -> None:
        if mode == self.mode or mode not in self.models:
            return
        self.mode = mode
        self.proxy.setSourceModel(self.models[mode])
        self.proxy.sort(0)
        sel = self.tree.selectionModel()
        sel.selectionChanged.connect(self.selectionChanged)
        sel.currentChanged.connect(self.selectionChanged)
        self.tree.expandAll()
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
        self.proxy.setFilterFixedString(text.strip())
        if text.strip():
            self.tree.expandAll()

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
        """Add an empty folder (kept in the view until a VM moves into it)."""
        name = name.strip()
        if not name or "/" in name:
            self.message.emit("A folder name cannot be empty or contain '/'.")
            return None
        path = norm_folder(f"{under or ''}/{name}")
        model = self.models[FOLDERS]
        model.extra_folders.add(path)
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
        """Rename `old` (and everything under it) by rewriting the folder of each VM in it."""
        name = name.strip()
        if not name or "/" in name:
            self.message.emit("A folder name cannot be empty or contain '/'.")
            return
        new = norm_folder(old.rsplit("/", 1)[0] + "/" + name)
        model = self.models[FOLDERS]
        model.extra_folders = {new + f[len(old):] if f == old or f.startswith(old + "/") else f
                               for f in model.extra_folders}
        for vm in list(self.engine.snapshot().vms):
            folder = norm_folder(vm.folder)
            if folder == old or folder.startswith(old + "/"):
                try:
                    await self.engine.set_folder(vm.key, new + folder[len(old):])
                except Exception as exc:
                    self.message.emit(f"Could not rename the folder of '{vm.name}': {exc}")
                    return
        model.apply(self.engine.snapshot(), self._jobs)
        self.select(("folder", new))
        self.message.emit(f"Renamed {old} to {new}")

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
        if self.mode == FOLDERS:
            if not menu.isEmpty():
                menu.addSeparator()
            menu.addAction("New Folder…", self.new_folder)
            rename = menu.addAction("Rename Folder…", self.rename_folder)
            rename.setEnabled(self.selected_folder() is not None)
        return menu

    def _context_menu(self, pos: Any) -> None:
        index = self.tree.indexAt(pos)
        menu = self.context_menu(index.data(KeyRole) if index.isValid() else None)
        if not menu.isEmpty():
            menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            menu.popup(self.tree.viewport().mapToGlobal(pos))

