"""Carrying out the undo log: ask the servers what is true now, decide (core.cleanup), act.

The same code unwinds a job that just failed and finishes, later, what a job (of this
process or of one that ended) could not undo at the time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from xencenter_lite.core.cleanup import Cleanup, CleanupKind, Facts, Place, Verdict, decide
from xencenter_lite.core.model import VmState
from xencenter_lite.engine.fleet import Fleet
from xencenter_lite.engine.undo import PendingStore, UndoLog
from xencenter_lite.virt import Removal, VirtError

log = logging.getLogger(__name__)

Note = Callable[[str], None]


class Settler:
    def __init__(self, fleet: Fleet, store: PendingStore) -> None:
        self.fleet = fleet
        self.store = store
        self.owned: set[str] = set()  # entries of running jobs: only they unwind them
        self._lock = asyncio.Lock()
        self._listeners: list[Note] = []
        self.notes: list[str] = []  # what was finished for jobs that had ended

    def subscribe(self, listener: Note) -> None:
        self._listeners.append(listener)

    # ---- facts ----------------------------------------------------------------------------
    async def _place(self, server: str, vm_uuid: str) -> Place:
        fleet = self.fleet
        if server not in fleet.servers or not fleet.is_connected(server):
            return Place(False)
        link = fleet.link(server)
        try:
            state = await fleet.call(server, link.locate, vm_uuid) if vm_uuid else None
            job = bool(await fleet.call(server, link.job_stats, vm_uuid)) if state else False
        except VirtError:
            return Place(False)
        return Place(True, fleet.host_uuid(server), state, job)

    async def facts(self, c: Cleanup) -> Facts:
        fleet = self.fleet
        here = await self._place(c.server, c.vm_uuid)
        home = await self._place(c.vm_home, c.vm_uuid) if c.vm_home else None
        if not here.reachable:
            return Facts(here, home)
        link = fleet.link(c.server)
        try:
            if c.kind is CleanupKind.VOLUME:
                path: str | None = c.path
                if not path:
                    path = await fleet.call(c.server, link.volume_path, c.sr, c.volume)
                if path is None:
                    return Facts(here, home, exists=False)
                if here.state is None:
                    # Whether a domain uses it only decides between waiting and acting
                    # here, and the removal itself refuses a volume in use (and then
                    # waits): no need to list every domain's definitions twice.
                    return Facts(here, home)
                return Facts(here, home, in_use=await fleet.call(c.server,
                                                                 link.volume_in_use, path))
            if c.kind is CleanupKind.OLD_DISK:
                # In use or not, the removal decides (it refuses a disk in use, and the
                # entry is then dropped, as decide would).
                return Facts(here, home)
            if c.kind in (CleanupKind.INCOMING_DOMAIN, CleanupKind.STARTED_PAUSED):
                return Facts(here, home, exists=here.state is not None)
            if c.kind is CleanupKind.BALLOON:
                there = await fleet.call(c.server, link.locate, c.target_vm)
                return Facts(here, home, exists=there is VmState.RUNNING)
            if here.state is None:
                return Facts(here, home)
            files = await fleet.call(c.server, link.disk_files, c.vm_uuid, c.dev)
            return Facts(here, home, live_path=files.live, persistent_path=files.persistent)
        except VirtError:
            return Facts(Place(False), home)

    # ---- acting ---------------------------------------------------------------------------
    async def settle(self, c: Cleanup, note: Note | None = None) -> bool:
        """Undo `c` if that is proven safe now. True when nothing is left to do for it."""
        if c.kind is CleanupKind.DISK_MOVE and not c.new_path:
            # The new volume's creation did not answer: is there one?
            if not self.fleet.is_connected(c.server):
                return False
            try:
                made = await self.fleet.call(c.server, self.fleet.link(c.server).volume_path,
                                             c.sr, c.volume)
            except VirtError:
                return False
            if made is None:
                return True
            c = replace(c, new_path=made)
        decision = decide(c, await self.facts(c))
        if decision.verdict is Verdict.WAIT:
            log.info("waiting to %s: %s", c.describe(), decision.reason)
            return False
        if decision.verdict is Verdict.DROP:
            return True
        fleet, server = self.fleet, c.server
        link = fleet.link(server)
        say = note or (lambda _m: None)
        try:
            if c.kind in (CleanupKind.VOLUME, CleanupKind.OLD_DISK):
                if c.path:
                    result = await fleet.call(server, link.remove_volume, c.path)
                else:
                    result = await fleet.call(server, link.remove_volume_named, c.sr, c.volume)
                what = c.path or f"volume '{c.volume}' of SR '{c.sr}'"
                if result is Removal.IN_USE:
                    say(f"Kept {what} on '{server}': a VM there uses it")
                    return c.kind is CleanupKind.OLD_DISK
                if result is Removal.REMOVED:
                    say(f"Removed {what} from '{server}'")
                return True
            if c.kind is CleanupKind.INCOMING_DOMAIN:
                if await fleet.call(server, link.remove_incoming, c.vm_uuid):
                    say(f"Removed the incomplete copy of '{c.vm_name}' from '{server}'")
                    return True
                return await fleet.call(server, link.locate, c.vm_uuid) is None
            if c.kind is CleanupKind.STARTED_PAUSED:
                if c.save:
                    # (Writing the VM's memory out can take a while.)
                    if await fleet.call(server, link.save_if_paused, c.vm_uuid,
                                        timeout=max(120.0, fleet.answer_timeout)):
                        say(f"Saved '{c.vm_name}' again on '{server}' (its saved state was "
                            "restored paused to be moved)")
                elif await fleet.call(server, link.halt_if_paused, c.vm_uuid):
                    say(f"Turned '{c.vm_name}' off on '{server}' (it was started paused to "
                        "be moved)")
                return True
            if c.kind is CleanupKind.BALLOON:
                await fleet.call(server, link.set_balloon, c.target_vm, c.size)
                say(f"Restored the memory of VM {c.target_vm} on '{server}'")
                return True
            if decision.repoint_to:
                await fleet.call(server, link.persist_disk, c.vm_uuid, c.dev,
                                 decision.repoint_to, c.fmt)
                say(f"The definition of '{c.vm_name}' on '{server}' now uses "
                    f"{decision.repoint_to} for disk {c.dev}")
            result = await fleet.call(server, link.remove_volume, decision.remove_path)
            if result is Removal.IN_USE:
                return False
            if result is Removal.REMOVED:
                say(f"Removed {decision.remove_path} from '{server}'")
            return True
        except VirtError as exc:
            log.info("could not %s yet: %s", c.describe(), exc.raw)
            return False

    async def unwind(self, undo: UndoLog, note: Note,
                     kind: CleanupKind | None = None) -> list[Cleanup]:
        """Undo a job's changes, last first; returns those left for later (they stay in
        the store, and are finished once the servers can prove it safe). With `kind`, only
        the entries of that kind: the job goes on, and owns the rest."""
        left: list[Cleanup] = []
        for entry in reversed([e for e in undo.entries if kind in (None, e.kind)]):
            try:
                settled = await self.settle(entry, note)
            except Exception:  # a bug must not stop the rest from being undone
                log.exception("undoing %s", entry.describe())
                settled = False
            if settled:
                undo.done(entry)
            else:
                left.append(entry)
        if kind is None:
            self.owned -= {e.id for e in undo.entries}
        return left

    def release(self, undo: UndoLog) -> None:
        """The job is over: what is still in its log is the store's to finish."""
        self.owned -= {e.id for e in undo.entries}

    def new_log(self) -> UndoLog:
        return _OwnedLog(self)

    async def settle_pending(self) -> None:
        """Finish what ended jobs left, where the servers now answer (those of this
        engine, and of any engine that has ended since: a command that died, say)."""
        async with self._lock:
            self.store.adopt()
            for entry in self.store.entries():
                if entry.id in self.owned:
                    continue
                servers = {entry.server, entry.vm_home} - {""}
                if not all(s in self.fleet.servers and self.fleet.is_connected(s)
                           for s in servers):
                    continue
                done: list[str] = []
                if await self.settle(entry, done.append):
                    self.store.remove(entry)
                    for message in done or [f"Nothing left to {entry.describe()}"]:
                        text = f"{message} (after: {entry.job})"
                        self.notes.append(text)
                        for listener in list(self._listeners):
                            listener(text)

    def pending(self) -> list[Cleanup]:
        return [e for e in self.store.entries() if e.id not in self.owned]


class _OwnedLog(UndoLog):
    """An undo log whose entries the settler leaves to its job while the job runs."""

    def __init__(self, settler: Settler) -> None:
        super().__init__(settler.store)
        self._settler = settler

    def record(self, entry: Cleanup) -> Cleanup:
        self._settler.owned.add(entry.id)
        return super().record(entry)
