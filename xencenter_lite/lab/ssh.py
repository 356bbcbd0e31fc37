"""The lab's servers over ssh, as an admin workstation reaches real ones.

With `ssh = true` in the lab file, every server runs an sshd inside its own namespaces
(listening on its management address, so a session there sees that server's libvirtd), this
machine gets an address on the management network, and `lab up` makes:

- {state_dir}/ssh/id_ed25519: the lab's client key (authorized for root on every server);
- {state_dir}/ssh/known_hosts: each server's host key, by management address;
- /etc/ssh/ssh_config.d/xencenter-lite-{lab}.conf: for those addresses only, ssh uses that
  key and that known_hosts (never the user's), strictly and without prompts.

The servers' libvirtds use the same client configuration when one migrates to another over
qemu+ssh (peer to peer, the source's libvirtd opens the connection).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from xencenter_lite.lab.config import LabConfig
from xencenter_lite.lab.errors import LabError
from xencenter_lite.lab.system import process_alive, run, spawn

SSHD = shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/sshd"
READY_TIMEOUT = 15.0


def _key(path: Path, comment: str) -> None:
    if not path.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def host_dir(config: LabConfig, server: str) -> Path:
    return config.host_dir(server) / "ssh"


def sshd_config(config: LabConfig, server: str) -> str:
    here = host_dir(config, server)
    return "\n".join([
        "# Written by `xencenter-lite lab up`; removed by `lab down`.",
        f"ListenAddress {config.address(server, config.management_network)}",
        f"HostKey {here / 'ssh_host_ed25519_key'}",
        f"PidFile {here / 'sshd.pid'}",
        f"AuthorizedKeysFile {config.ssh_dir / 'authorized_keys'}",
        "AllowUsers root",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # the state directory's modes are the lab's, not a home's
        "PrintMotd no",
        "",
    ])


def client_config(config: LabConfig) -> str:
    addresses = " ".join(config.address(s.name, config.management_network)
                         for s in config.servers)
    return "\n".join([
        f"# Written by `xencenter-lite lab up` for the lab '{config.name}'; removed by "
        "`lab down`.",
        f"Host {addresses}",
        "    User root",
        f"    IdentityFile {config.ssh_dir / 'id_ed25519'}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {config.ssh_dir / 'known_hosts'}",
        "    GlobalKnownHostsFile /dev/null",
        "    StrictHostKeyChecking yes",
        "    BatchMode yes",
        "    ConnectTimeout 5",
        "",
    ])


def prepare(config: LabConfig) -> None:
    """Keys, the servers' sshd configurations, known_hosts (before the servers start)."""
    config.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    client = config.ssh_dir / "id_ed25519"
    _key(client, f"xencenter-lite lab {config.name}")
    (config.ssh_dir / "authorized_keys").write_text(Path(f"{client}.pub").read_text())
    known = []
    for server in config.servers:
        here = host_dir(config, server.name)
        here.mkdir(mode=0o700, parents=True, exist_ok=True)
        _key(here / "ssh_host_ed25519_key", f"{server.name} host key")
        (here / "sshd_config").write_text(sshd_config(config, server.name))
        public = (here / "ssh_host_ed25519_key.pub").read_text().split()
        known.append(f"{config.address(server.name, config.management_network)} "
                     f"{public[0]} {public[1]}")
    (config.ssh_dir / "known_hosts").write_text("\n".join(known) + "\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation


def install_client_config(config: LabConfig) -> None:
    path = config.ssh_client_config
    if not path.parent.is_dir():
        raise LabError(f"{path.parent} does not exist: is openssh-client installed?")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(client_config(config))
    tmp.replace(path)


def remove_client_config(config: LabConfig) -> None:
    with contextlib.suppress(FileNotFoundError):
        config.ssh_client_config.unlink()


def start(config: LabConfig, server: str, libvirtd_pid: int) -> int:
    """Start the server's sshd in the namespaces of its libvirtd; returns its PID."""
    here = host_dir(config, server)
    run([SSHD, "-t", "-f", str(here / "sshd_config")], what=f"checking sshd_config of {server}")
    return spawn(["nsenter", "-t", str(libvirtd_pid), "-n", "-m", "-u", "--",
                  SSHD, "-D", "-e", "-f", str(here / "sshd_config")],
                 config.host_dir(server) / "log" / "sshd.out")


def wait_until_ready(config: LabConfig, server: str, pid: int) -> None:
    """Wait until `ssh root@ADDRESS true` works from this machine."""
    address = config.address(server, config.management_network)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if not process_alive(pid):
            raise LabError(f"sshd of {server} exited during start-up:\n{log_tail(config, server)}")
        done = run(["ssh", f"root@{address}", "true"], check=False, timeout=10)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise LabError(f"ssh root@{address} ({server}) did not work within "
                           f"{READY_TIMEOUT:.0f} s: {done.stderr.strip()}\n"
                           f"{log_tail(config, server)}")
        time.sleep(0.2)


def log_tail(config: LabConfig, server: str, lines: int = 10) -> str:
    path = config.host_dir(server) / "log" / "sshd.out"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(sshd wrote no log)"
