"""Folder View's folders that outlive their VMs.

A VM's folder is in its own libvirt metadata, so it moves with the VM. A folder exists
apart from what is in it, as in XenCenter: one made with New Folder, or one its last VM
left, stays until it is deleted. Those are kept here, in the inventory's state directory
(`folders.kept`, JSON, beside the undo log and the maintenance marks), so every console of that
inventory on this machine sees them; each write replaces the file whole.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from xencenter_lite.core.folders import in_folder, norm_folder

log = logging.getLogger(__name__)

FILE = "folders.kept"  # (not *.json: those are undo logs, adopted by the next engine)


class FolderStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE
        self._folders: frozenset[str] = frozenset()
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of what was read

    def all(self) -> frozenset[str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._folders, self._seen = frozenset(), None
            return self._folders
        seen = (st.st_mtime_ns, st.st_size)
        if seen != self._seen:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                raw = data.get("folders", []) if isinstance(data, dict) else []
                self._folders = frozenset(norm_folder(f) for f in raw
                                          if isinstance(f, str) and norm_folder(f))
            except (OSError, ValueError) as exc:
                log.warning("cannot read %s (%s); no empty folder is shown", self.path, exc)
                self._folders = frozenset()
            self._seen = seen
        return self._folders

    def add(self, paths: Iterable[str]) -> None:
        have = self.all()
        new = {norm_folder(p) for p in paths} - {""}
        if not new <= have:
            self._write(have | new)

    def rename(self, old: str, new: str) -> None:
        """`old` and everything under it are now under `new`."""
        self._write({new + f[len(old):] if in_folder(f, old) else f for f in self.all()} | {new})

    def remove(self, folder: str) -> None:
        """Forget `folder` and everything under it."""
        self._write({f for f in self.all() if not in_folder(f, folder)})

    def _write(self, folders: Iterable[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".new")
        tmp.write_text(json.dumps({"folders": sorted(folders)}, indent=1) + "\n",
                       encoding="utf-8")
        os.replace(tmp, self.path)
        self._seen = None
