"""Turn libvirt's errors into sentences an operator understands.

The libvirt layer hands us the error's code and raw text; we keep the raw text for the
details pane and show the friendly one. Codes are libvirt's virErrorNumber values.
"""

from __future__ import annotations

from dataclasses import dataclass

ABORTED = 78
NOT_VALID_NOW = 55  # VIR_ERR_OPERATION_INVALID
VOLUME_EXISTS = 90  # VIR_ERR_STORAGE_VOL_EXIST
# What the engine reports when a server let a call wait longer than it waits for one.
STOPPED_ANSWERING = "the server stopped answering"

_BY_CODE: dict[int, str] = {
    78: "The operation was cancelled.",
    42: "The VM no longer exists on its server.",
    55: "The VM is not in a state that allows this operation.",
    38: "A server could not be reached or refused the operation.",
    39: "The connection to a server broke during the operation.",
    45: "A server refused our credentials.",
    68: "A server did not answer in time.",
    81: "libvirt considers this migration unsafe for the VM's disks.",
    91: "The destination's CPU lacks features the VM uses.",
    87: "A resource the operation needs is busy.",
    90: "A volume with that name already exists in the destination SR.",
    49: "An SR (storage pool) the operation needs was not found.",
    50: "A disk volume the operation needs was not found.",
    67: "The destination does not support this VM's configuration.",
    84: "The server does not support this operation.",
}

_NO_TLS = ("The servers are not set up for TLS migration (no certificates); set up libvirt's "
           "TLS certificates on both, or migrate without TLS.")

_BY_TEXT: tuple[tuple[str, str], ...] = (
    ("certificate", _NO_TLS),
    ("unable to access credentials", _NO_TLS),
    ("ca-cert.pem", _NO_TLS),
    ("no space left on device", "The destination SR ran out of space."),
    ("enospc", "The destination SR ran out of space."),
    ("canceled by client", "The operation was cancelled."),
    ("cancelled by client", "The operation was cancelled."),
    ("connection refused", "A server refused the connection; is libvirtd running there?"),
    ("no route to host", "The destination cannot be reached on the chosen network."),
    ("network is unreachable", "The destination cannot be reached on the chosen network."),
    ("connection reset", "The network connection to the destination was lost."),
    ("broken pipe", "The network connection to the destination was lost."),
    ("keepalive timeout", "A server stopped answering (the connection to it timed out)."),
    (STOPPED_ANSWERING, "A server stopped answering (the connection to it timed out)."),
    ("end of file while reading data", "The connection to a server was lost."),
    ("cannot recv data", "The connection to a server was lost."),
    ("timed out", "A server did not answer in time."),
    ("domain is not running", "The VM is not running."),
    ("attempt to migrate guest to the same host", "The destination is the VM's own server."),
    ("not enough memory", "Not enough memory on the destination."),
    ("cannot allocate memory", "Not enough memory on the destination."),
)


@dataclass(frozen=True)
class FriendlyError:
    message: str
    raw: str
    code: int | None = None


def friendly(code: int | None, raw: str, context: str = "") -> FriendlyError:
    """A friendly message for a libvirt error; `context` prefixes it ("Migrating 'x'")."""
    text = raw.lower()
    message = next((m for key, m in _BY_TEXT if key in text), None)
    if message is None and code is not None:
        message = _BY_CODE.get(code)
    if message is None:
        message = "The server reported an error (see details)."
    if context:
        message = f"{context}: {message}"
    return FriendlyError(message, raw, code)


def is_volume_exists(code: int | None, raw: str) -> bool:
    """libvirt refused to create a volume because one of that name is there (the storage
    driver says so by code; the test driver only in words)."""
    return code == VOLUME_EXISTS or "already exists" in raw.lower()
