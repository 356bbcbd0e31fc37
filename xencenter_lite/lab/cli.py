"""`xencenter-lite lab up|down|status`: the command-line side of the built-in lab."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from xencenter_lite.lab.config import load_lab_config
from xencenter_lite.lab.errors import LabConfigError, LabError
from xencenter_lite.lab.lab import Lab

ACTIONS = ("up", "down", "status")


def run_lab_command(
    action: str,
    config_path: Path | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run `lab ACTION`; returns the exit code (0 ok, 1 the lab failed, 2 usage/config).

    `up` prints progress and, as the very last line of `out`, the inventory file's path.
    """
    if action not in ACTIONS:
        print(f"Unknown lab action {action!r}; use one of: {', '.join(ACTIONS)}.", file=err)
        return 2
    if os.geteuid() != 0:
        print(f"The lab needs root: run it as root (sudo xencenter-lite lab {action}).", file=err)
        return 2
    try:
        config = load_lab_config(config_path)
    except LabConfigError as exc:
        print(exc, file=err)
        return 2

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    lab = Lab(config, log=say)
    try:
        if action == "up":
            path = lab.up()
            say(str(path))
        elif action == "down":
            lab.down()
        else:
            say(lab.status())
    except LabConfigError as exc:
        print(exc, file=err)
        return 2
    except LabError as exc:
        print(f"lab {action} failed: {exc}", file=err)
        return 1
    return 0
