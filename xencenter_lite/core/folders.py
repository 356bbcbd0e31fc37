"""Folder paths of Folder View: "/Web/Frontend", "" for no folder."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from xencenter_lite.core.model import VM


@lru_cache(maxsize=4096)  # the tree asks for every VM at every update
def norm_folder(path: str) -> str:
    """"Web", "/Web/" and "/Web" are the same folder: "/Web"; no folder is ""."""
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts) if parts else ""


def in_folder(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or a folder inside it."""
    return bool(folder) and (path == folder or path.startswith(folder + "/"))


def vms_in_folder(vms: Iterable[VM], folder: str) -> list[VM]:
    """The VMs in `folder` or in a folder inside it."""
    return [vm for vm in vms if in_folder(norm_folder(vm.folder), folder)]
