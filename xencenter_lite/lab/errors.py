"""Errors of the built-in lab: every message is meant for the operator who runs `lab up`."""

from __future__ import annotations


class LabError(Exception):
    """Something the lab could not do; the message says what and, where possible, the fix."""


class LabConfigError(LabError):
    """The lab's TOML file is wrong: the message names the file, the key and the fix."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")
