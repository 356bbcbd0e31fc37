"""Turn libvirt's errors into sentences an operator understands.

The libvirt layer hands us the error's code and raw text; we keep the raw text for the
details pane and show the friendly one. Codes are libvirt's virErrorNumber values.
"""

from __future__ import annotations

import re
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

# Codes whose sentence says all there is (the server's words would add nothing).
_SAID_ENOUGH = frozenset({78, 42, 90})

_NO_TLS = ("The servers are not set up for TLS migration (no certificates); set up libvirt's "
           "TLS certificates on both, or migrate without TLS.")

# Reaching a server: ssh's, libvirt's and GnuTLS's own words (as libvirt 9.0 passes them
# on, seen on these machines), with what to do. Checked before the plain phrases below,
# which would call most of them a lost connection. Named groups go into the message.
_HOST = r"(?P<host>[^\s:']+)"
_REACHING: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), message) for pattern, message in (
        (rf"host key for {_HOST} has changed",
         "The ssh host key of {host} has changed since it was last accepted (a reinstalled "
         "server, or someone in between). If the server was reinstalled, remove the old key "
         "(ssh-keygen -R {host}) and connect once with ssh to accept the new one."),
        (rf"no \S+ host key is known for {_HOST}",
         "ssh does not know the host key of {host}: connect once with ssh (ssh root@{host}) "
         "to check and accept it, or add it to known_hosts."),
        (r"host key verification failed",
         "ssh could not verify the server's host key: connect once with ssh to check and "
         "accept it, or add it to known_hosts."),
        (rf"(?P<user>[^\s:]+)@{_HOST}: permission denied \((?P<methods>[^)]*)\)",
         "The server {host} refused the ssh login as {user} (it accepts: {methods}): add "
         "your public key to that user's authorized_keys there (ssh-copy-id {user}@{host}), "
         "or connect as a user it accepts."),
        (r"authentication failed: all provided authentication methods",
         "The server refused the ssh login: add your public key to the user's "
         "authorized_keys there (ssh-copy-id), or connect as a user it accepts."),
        (rf"could not resolve hostname {_HOST}",
         "The name {host} does not resolve to an address: check the server's URI, or DNS "
         "(or /etc/hosts) on this machine."),
        (rf"connect to host {_HOST} port (?P<port>\d+): no route to host",
         "{host} cannot be reached (no route to host): check its address, and that it is up "
         "and on a network this machine reaches."),
        (rf"connect to host {_HOST} port (?P<port>\d+): connection timed out",
         "{host} did not answer on port {port} (timed out): check its address, and that no "
         "firewall drops ssh."),
        (rf"connect to host {_HOST} port (?P<port>\d+): connection refused",
         "{host} refused ssh on port {port}: is sshd running there?"),
        (r"nc: not found",
         "The server has no way to reach libvirt behind ssh (neither virt-ssh-helper nor "
         "nc): install libvirt's client tools (libvirt-clients) or netcat there."),
        (r"failed to connect socket to '(?P<path>[^']+)': no such file or directory",
         "libvirt is not running there: there is no socket at {path}. Start libvirtd on the "
         "server (systemctl start libvirtd)."),
        (r"failed to connect socket to '(?P<path>[^']+)': connection refused",
         "libvirt is not running there: nothing listens on {path}. Start libvirtd on the "
         "server (systemctl start libvirtd)."),
        (r"failed to connect socket to '(?P<path>[^']+)': permission denied",
         "This user may not use libvirt's socket {path}: run as root, or join the libvirt "
         "group."),
        (r"cannot (?:read|access) ca certificate '(?P<path>[^']+)'",
         "This machine has no TLS certificates for libvirt ({path} is missing): install the "
         "CA certificate and a client certificate and key, or connect over ssh instead "
         "(qemu+ssh://)."),
        (r"cannot (?:read|access) (?:client )?(?:certificate|key) '(?P<path>[^']+)'",
         "This machine's TLS client certificate or key is missing ({path}): make one signed "
         "by the servers' CA, or connect over ssh instead (qemu+ssh://)."),
        (r"(?:server certificate failed validation|certificate is not trusted|"
         r"certificate check failed)",
         "The server's TLS certificate is not trusted by this machine's CA certificate: "
         "install the CA that signed it (/etc/pki/CA/cacert.pem), or connect over ssh."),
        (r"(?:does not match certificate|hostname .* does not match)",
         "The server's TLS certificate is not for the name in its URI: connect with the name "
         "its certificate was made for."),
        (r"no network with matching name '(?P<name>[^']+)'",
         "The destination has no libvirt network '{name}' for one of the VM's NICs: plug "
         "the NIC into one it has (--nic MAC=NETWORK, the wizard's Networking page), or "
         "define the network there."),
        (r"cannot get interface mtu on '(?P<name>[^']+)': no such device",
         "The destination has no bridge '{name}' for one of the VM's NICs: plug the NIC into "
         "one it has (--nic MAC=bridge:NAME, the wizard's Networking page), or create it."),
        (r"unable to connect to server at '(?P<addr>[^']+)': connection refused",
         "{addr} refused the connection: libvirt does not listen for network connections "
         "there (start libvirtd's TLS or TCP socket), or connect over ssh (qemu+ssh://)."),
    ))

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
    message = next((m.format(**found.groupdict()) for pattern, m in _REACHING
                    if (found := pattern.search(raw)) is not None), None)
    if message is None:
        message = next((m for key, m in _BY_TEXT if key in text), None)
    if message is None:
        # No sentence of ours: libvirt's own reason, in its words, after what kind of error
        # it is (never only "see details": the operator should not have to open them).
        category = _BY_CODE.get(code) if code is not None else None
        said = "" if code in _SAID_ENOUGH else plain(raw)
        if category and said:
            message = f"{category} The server said: {said}"
        elif said:
            message = f"The server said: {said}"
        else:
            message = category or "The server reported an error (see details)."
    if context:
        message = f"{context}: {message}"
    return FriendlyError(message, raw, code)


# libvirt's prefixes that tell the kind of error, not the reason (the code says the kind).
_PREFIXES = ("internal error: ", "operation failed: ", "requested operation is not valid: ",
             "unsupported configuration: ", "operation not supported: ",
             "invalid argument: ", "error: ")


def plain(raw: str, limit: int = 300) -> str:
    """libvirt's text as one sentence: its first line, without the kind-of-error prefixes,
    capitalised and ended with a full stop (cut at `limit` characters)."""
    line = next((ln.strip() for ln in raw.splitlines() if ln.strip()), "")
    lowered = line.lower()
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if lowered.startswith(prefix):
                line, lowered = line[len(prefix):], lowered[len(prefix):]
                changed = True
    if not line:
        return ""
    if len(line) > limit:
        line = line[:limit - 1].rstrip() + "…"
    line = line[:1].upper() + line[1:]
    return line if line.endswith((".", "…", "?", "!")) else line + "."


def is_volume_exists(code: int | None, raw: str) -> bool:
    """libvirt refused to create a volume because one of that name is there (the storage
    driver says so by code; the test driver only in words)."""
    return code == VOLUME_EXISTS or "already exists" in raw.lower()


# What libvirt's client says when the connection a call was made on went away under it.
_CONNECTION_LOST = ("end of file while reading data", "cannot recv data", "connection reset",
                    "broken pipe", "keepalive timeout", "client socket is closed",
                    "connection closed", "not connected to")
RPC_ERROR = 39  # VIR_ERR_RPC


def connection_lost(code: int | None, raw: str) -> bool:
    """The call's connection broke (or the server stopped answering): the server may have
    done what it was asked, may be doing it still, or may never have heard of it."""
    text = raw.lower()
    return raw == STOPPED_ANSWERING or code == RPC_ERROR or any(p in text
                                                              for p in _CONNECTION_LOST)
