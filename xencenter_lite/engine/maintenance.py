"""Which servers are in maintenance mode, kept beside the undo log of the inventory.

A server is known here by its host UUID (what libvirt says it is), with the name it had
when it entered, so a server renamed in the inventory stays in maintenance, and another
entry for the same host says so too. The file is shared by every command and console of
the inventory on this machine, and read again whenever it changes. The VMs moved off a
server keep that server's host UUID in their own metadata (core.metadata), so leaving
maintenance mode finds them wherever they run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Not a .json name: the undo log adopts every .json file of the directory it has no lock of.
FILE = "maintenance.marks"


class MaintenanceMarks:
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE
        self._marks: dict[str, dict[str, Any]] = {}
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of what was read

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._marks, self._seen = {}, None
            return self._marks
        seen = (st.st_mtime_ns, st.st_size)
        if seen != self._seen:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                marks = data.get("servers", {}) if isinstance(data, dict) else {}
                self._marks = {k: v for k, v in marks.items()
                               if isinstance(k, str) and isinstance(v, dict)}
            except (OSError, ValueError) as exc:
                log.warning("cannot read %s (%s); no server counts as in maintenance",
                            self.path, exc)
                self._marks = {}
            self._seen = seen
        return self._marks

    def changed(self) -> bool:
        """Whether the file changed since it was last read (another command wrote it)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self._seen is not None
        return (st.st_mtime_ns, st.st_size) != self._seen

    def marked(self, host_uuid: str) -> bool:
        return bool(host_uuid) and host_uuid in self._load()

    def all(self) -> dict[str, dict[str, Any]]:
        return dict(self._load())

    def mark(self, host_uuid: str, server: str) -> None:
        marks = dict(self._load())
        marks[host_uuid] = {"server": server, "since": int(time.time())}
        self._write(marks)

    def unmark(self, host_uuid: str) -> None:
        marks = dict(self._load())
        if marks.pop(host_uuid, None) is not None:
            self._write(marks)

    def _write(self, marks: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f"{FILE}.{os.getpid()}.new")
        tmp.write_text(json.dumps({"servers": marks}, indent=1, sort_keys=True),
                       encoding="utf-8")
        os.replace(tmp, self.path)
        with contextlib.suppress(OSError):
            st = self.path.stat()
            self._seen = (st.st_mtime_ns, st.st_size)
        self._marks = marks
