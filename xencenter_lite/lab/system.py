"""Small wrappers around the machine: commands, processes, mounts, users.

Commands always run as argument lists (never through a shell built from config values).
Processes are found and stopped by PID, and only after checking that they are the lab's own.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from xencenter_lite.lab.errors import LabError

COMMAND_TIMEOUT = 60.0
_ENV = {**os.environ, "LC_ALL": "C", "LANG": "C"}

_TOOL_PACKAGES = {
    "ip": "iproute2",
    "tc": "iproute2",
    "virsh": "libvirt-clients",
    "libvirtd": "libvirt-daemon",
    "qemu-img": "qemu-utils",
    "qemu-io": "qemu-utils",
    "unshare": "util-linux",
    "taskset": "util-linux",
    "tini": "tini",
    "certtool": "gnutls-bin",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
    "mount": "mount",
    "umount": "mount",
    "groupadd": "passwd",
    "useradd": "passwd",
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
}


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
    what: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (an argument list); on failure raise LabError with its stderr."""
    argv = [str(a) for a in args]
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_ENV,
            check=False,
            cwd=cwd,
        )
    except FileNotFoundError:
        package = _TOOL_PACKAGES.get(argv[0], argv[0])
        raise LabError(
            f"`{argv[0]}` is not installed; install it (apt-get install {package})."
        ) from None
    except subprocess.TimeoutExpired:
        raise LabError(
            f"{what or shlex.join(argv)} did not finish within {timeout:.0f} s."
        ) from None
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
        raise LabError(
            f"{what or shlex.join(argv)} failed (exit {proc.returncode}): {' '.join(detail[-3:])}"
        )
    return proc


# ---- processes ---------------------------------------------------------------------------


def process_exe(pid: int) -> str | None:
    """The executable of a live process, or None if it is gone (or a zombie)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state is the first field after the parenthesised command name.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def parent_pid(pid: int) -> int | None:
    """The PID of `pid`'s parent (None if `pid` is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # After the parenthesised command name: the state, then the parent's PID.
    return int(stat.rsplit(")", 1)[-1].split()[1])


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


CGROUP_ROOT = Path("/sys/fs/cgroup")


def idle_cpu_group(name: str) -> Path | None:
    """A CPU control group called `name` whose processes get only the CPU time nothing else
    on the machine wants (cpu.idle, Linux 5.15 and later; before it, the least weight a
    group can have). Returns the group's directory, or None where the machine has no CPU
    controller to use (cgroup v1 `cpu`, or v2 with `cpu` enabled at the root)."""
    v1 = CGROUP_ROOT / "cpu"
    try:
        if (v1 / "cpu.shares").exists():
            group, knob, least = v1 / name, "cpu.shares", 2
        elif "cpu" in (CGROUP_ROOT / "cgroup.subtree_control").read_text().split():
            group, knob, least = CGROUP_ROOT / name, "cpu.weight", 1
        else:
            return None
        group.mkdir(exist_ok=True)
        if (group / "cpu.idle").exists():
            (group / "cpu.idle").write_text("1")
        else:
            (group / knob).write_text(str(least))
    except OSError:
        return None
    return group


def in_cpu_group(pid: int, name: str) -> bool:
    """Whether process `pid` runs in the group idle_cpu_group made as `name`."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if path == f"/{name}" and ("cpu" in controllers.split(",") or controllers == ""):
            return True
    return False


def remove_cpu_group(name: str) -> None:
    """Remove the group idle_cpu_group made as `name`, once its processes are gone (a group that
    still has some stays)."""
    for group in (CGROUP_ROOT / "cpu" / name, CGROUP_ROOT / name):
        if (group / "cgroup.procs").exists():
            with contextlib.suppress(OSError):
                group.rmdir()


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def stop_processes(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL whatever is left after `timeout`; returns the PIDs that stayed."""
    pending = {pid for pid in pids if process_alive(pid)}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            reap_children()
            pending = {pid for pid in pending if process_alive(pid)}
            if pending:
                time.sleep(0.05)
        if not pending:
            break
    reap_children()
    return sorted(pending)


_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(args: Sequence[str], log: Path) -> int:
    """Start a long-running process in its own session, output to `log`; return its PID."""
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                [str(a) for a in args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=_ENV,
            )
        except FileNotFoundError:
            raise LabError(f"`{args[0]}` is not installed.") from None
    # Keep the Popen so that, when this process started it, it can be reaped after it ends.
    _children[proc.pid] = proc
    return proc.pid


def reap_children() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


# ---- mounts ------------------------------------------------------------------------------


def mount_points() -> list[Path]:
    """Mount points of this process's mount namespace (octal escapes decoded)."""
    result = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            result.append(Path(unescape_mount(fields[4])))
    return result


def unescape_mount(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def is_mount_point(path: Path) -> bool:
    return path in mount_points()


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root`, deepest first."""
    found = [m for m in mount_points() if m == root or root in m.parents]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def direct_io_works(directory: Path) -> bool:
    """Whether files in `directory` can be opened for direct I/O (O_DIRECT), which QEMU
    needs for a disk with cache="none"; the probe file is removed."""
    probe = directory / f".direct-io-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


def mount_tmpfs(path: Path, size_mib: int) -> None:
    run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "xcl-lab-sr", str(path)],
        what=f"mounting a {size_mib} MiB tmpfs on {path}",
    )


def unmount(path: Path) -> None:
    proc = run(["umount", "--", str(path)], check=False)
    if proc.returncode != 0 and is_mount_point(path):
        # Something still uses it: detach it now, the kernel frees it when the users go.
        run(["umount", "--lazy", "--", str(path)], what=f"unmounting {path}")


# ---- users and groups ----------------------------------------------------------------------


def ensure_libvirt_accounts() -> list[str]:
    """libvirtd 9.0's QEMU driver refuses to start without these; returns what was created."""
    created = []
    for group in ("kvm", "libvirt-qemu"):
        try:
            grp.getgrnam(group)
        except KeyError:
            run(["groupadd", "--system", group], what=f"creating the group {group}")
            created.append(f"group {group}")
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        run(
            [
                "useradd",
                "--system",
                "--gid",
                "libvirt-qemu",
                "--groups",
                "kvm",
                "--no-create-home",
                "--home-dir",
                "/var/lib/libvirt",
                "--shell",
                "/usr/sbin/nologin",
                "libvirt-qemu",
            ],
            what="creating the user libvirt-qemu",
        )
        created.append("user libvirt-qemu")
    return created


def kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def kvm_is_pvm() -> bool:
    """True when /dev/kvm is kvm_pvm (KVM without VT-x/AMD-V, in some nested sandboxes).

    It runs firmware-only guests, but emulates an unmodified Linux kernel instruction by
    instruction: the lab's Linux guest was still in its decompressor after 4 minutes."""
    modules = Path("/sys/module")
    hardware = (modules / "kvm_intel").exists() or (modules / "kvm_amd").exists()
    return (modules / "kvm_pvm").exists() and not hardware
