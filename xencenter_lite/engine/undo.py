"""The undo log: every change a job makes is written down before it is made, and unwound
whatever ends the job; what cannot be undone at once outlives the process.

PendingStore keeps the written-down changes (core.cleanup.Cleanup) of one engine in a file
of its own, under a lock held while the engine runs: `inventory-<hash>/<owner>.json` in
the user's state directory (one directory per inventory file). An engine that finds the
file of another engine whose lock it can take (that engine has ended, however it ended)
adopts its entries and finishes them. So a migration that fails while a server cannot be
reached leaves a record that the next command or console connecting to the servers acts
on, once it can prove it safe (core.cleanup.decide).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from xencenter_lite.core.cleanup import Cleanup

log = logging.getLogger(__name__)

STATE_ENV = "XDG_STATE_HOME"


def state_dir_for(inventory_path: Path) -> Path:
    """Where the pending clean-ups of the fleet in `inventory_path` are kept."""
    base = os.environ.get(STATE_ENV) or str(Path.home() / ".local" / "state")
    resolved = str(Path(inventory_path).expanduser().resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:16]
    return Path(base) / "xencenter-lite" / f"inventory-{digest}"


class PendingStore:
    """This engine's written-down changes, on disk as soon as they are recorded."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.owner = uuid.uuid4().hex
        self._entries: dict[str, Cleanup] = {}
        self._lock_fd: int | None = None
        self._file = directory / f"{self.owner}.json"

    # ---- life cycle ---------------------------------------------------------------------
    def open(self) -> None:
        """Take this engine's lock, then adopt what ended engines left."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / f"{self.owner}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        self.adopt()

    def close(self) -> None:
        """Let go; what is still pending stays in the file for the next engine."""
        if self._lock_fd is None:
            return
        if not self._entries:
            with contextlib.suppress(FileNotFoundError):
                self._file.unlink()
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{self.owner}.lock").unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def adopt(self) -> list[Cleanup]:
        """Take over the entries of every engine that has ended; returns them."""
        adopted: list[Cleanup] = []
        if self._lock_fd is None:
            return adopted
        for lock_path in sorted(self.directory.glob("*.lock")):
            owner = lock_path.stem
            if owner == self.owner:
                continue
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # that engine runs: its entries are its own
                data_path = self.directory / f"{owner}.json"
                for entry in _read(data_path):
                    if entry.id not in self._entries:
                        self._entries[entry.id] = entry
                        adopted.append(entry)
                if adopted:
                    self._write()
                with contextlib.suppress(FileNotFoundError):
                    data_path.unlink()
                with contextlib.suppress(FileNotFoundError):
                    lock_path.unlink()
            finally:
                os.close(fd)
        # Data files with no lock at all (an engine killed while writing its lock): adopt.
        for data_path in sorted(self.directory.glob("*.json")):
            if data_path.stem == self.owner or (self.directory /
                                                f"{data_path.stem}.lock").exists():
                continue
            for entry in _read(data_path):
                if entry.id not in self._entries:
                    self._entries[entry.id] = entry
                    adopted.append(entry)
            self._write()
            with contextlib.suppress(FileNotFoundError):
                data_path.unlink()
        if adopted:
            log.info("adopted %d pending clean-ups", len(adopted))
        return adopted

    # ---- entries --------------------------------------------------------------------------
    def entries(self) -> list[Cleanup]:
        return list(self._entries.values())

    def add(self, entry: Cleanup) -> None:
        self._entries[entry.id] = entry
        self._write()

    def replace(self, entry: Cleanup) -> None:
        if entry.id in self._entries:
            self._entries[entry.id] = entry
            self._write()

    def remove(self, entry: Cleanup) -> None:
        if self._entries.pop(entry.id, None) is not None:
            self._write()

    def _write(self) -> None:
        if self._lock_fd is None:
            return  # not opened (a store in memory only)
        tmp = self._file.with_suffix(".tmp")
        data = {"version": 1, "entries": [e.to_json() for e in self._entries.values()]}
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self._file)


def _read(path: Path) -> list[Cleanup]:
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("cannot read pending clean-ups in %s: %s", path, exc)
        return []
    out = []
    for item in data.get("entries", []) if isinstance(data, dict) else []:
        try:
            out.append(Cleanup.from_json(item))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("skipping an unreadable clean-up in %s: %s", path, exc)
    return out


class UndoLog:
    """One job's changes, in the order made; unwound last first."""

    def __init__(self, store: PendingStore) -> None:
        self.store = store
        self.entries: list[Cleanup] = []

    def record(self, entry: Cleanup) -> Cleanup:
        """Write the change down; call before making it."""
        self.entries.append(entry)
        self.store.add(entry)
        return entry

    def amend(self, entry: Cleanup, **changes: Any) -> Cleanup:
        """What became known once the change was made (a volume's path)."""
        new = replace(entry, **changes)
        self.entries = [new if e.id == entry.id else e for e in self.entries]
        self.store.replace(new)
        return new

    def keep(self, entries: Iterable[Cleanup]) -> None:
        """These changes are now the VM's own (it runs with them): never undo them."""
        ids = {e.id for e in entries}
        for e in [e for e in self.entries if e.id in ids]:
            self.entries.remove(e)
            self.store.remove(e)

    def done(self, entry: Cleanup) -> None:
        """Undone (or nothing left to undo)."""
        self.keep([entry])
