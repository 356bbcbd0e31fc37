"""One lab server = one libvirtd in its own network, mount and UTS namespace.

The server's state tree ({state_dir}/hosts/SERVER/{etc,lib,run,log,cache}) is bind-mounted
over /etc/libvirt, /var/lib/libvirt, /run/libvirt, /var/log/libvirt and /var/cache/libvirt
inside a private mount namespace, so every libvirtd has its own configuration, domains,
pools, sockets and logs. Clients reach it from outside through its socket:
qemu+unix:///system?socket={state_dir}/hosts/SERVER/run/libvirt-sock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from xencenter_lite.lab import tls
from xencenter_lite.lab.config import LabConfig
from xencenter_lite.lab.errors import LabError
from xencenter_lite.lab.system import parent_pid, process_alive, run, spawn

STATE_SUBDIRS = ("etc", "lib", "run", "log", "cache")
# The real paths the state tree is mounted over; they must exist as mount points.
MOUNT_POINTS = tuple(
    Path(p)
    for p in (
        "/etc/libvirt",
        "/var/lib/libvirt",
        "/run/libvirt",
        "/var/log/libvirt",
        "/var/cache/libvirt",
    )
)
LIBVIRTD = shutil.which("libvirtd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/libvirtd"
TINI = shutil.which("tini", path="/usr/bin:/usr/sbin:/bin:/sbin") or "/usr/bin/tini"
START_TIMEOUT = 30.0

# A fixed script: every value comes in as a positional argument, nothing is interpolated.
# $1-$5 the state subdirectories, $6 the hostname, $7 the hosts file, $8 tini, $9 libvirtd,
# then the emulators to hide. Propagation "slave": mounts made later on the machine (an SR's
# tmpfs) and unmounts (`ip netns delete`, another lab's down) still reach this namespace;
# nothing made in here leaks out.
#
# libvirtd runs under tini as a subreaper. The QEMU processes libvirt starts are orphans, and
# when libvirt stops one (every migration ends so, on its source) it waits until the process
# is gone, zombie included. On a server, init reaps at once; some machines' PID 1 reaps only
# every two seconds, which added up to 2 s to every migration. tini reaps at once.
_START_SCRIPT = """set -e
mount --bind "$1" /etc/libvirt
mount --bind "$2" /var/lib/libvirt
mount --bind "$3" /run/libvirt
mount --bind "$4" /var/log/libvirt
mount --bind "$5" /var/cache/libvirt
hostname "$6"
mount --bind "$7" /etc/hosts
tini="$8"
libvirtd="$9"
shift 9
for emulator in "$@"; do
    mount --bind /dev/null "$emulator"
done
exec "$tini" -s -- "$libvirtd" --listen --config /etc/libvirt/libvirtd.conf \
    --pid-file /run/libvirt/libvirtd.pid
"""
# libvirtd probes every QEMU binary it finds at start-up (~4 s each). The lab's guests are all
# x86_64, so inside the lab servers other emulators are hidden (/dev/null is not executable)
# and the probe results of the first server are copied to the others (CAPS_CACHE).
HIDDEN_EMULATORS = ("/usr/bin/qemu-system-i386",)
CAPS_CACHE = Path("cache") / "qemu" / "capabilities"


def libvirtd_conf(config: LabConfig, server: str) -> str:
    return "\n".join(
        [
            "# Written by `xencenter-lite lab up`; removed by `lab down`.",
            f'host_uuid = "{config.host_uuid(server)}"',
            'auth_unix_rw = "none"',
            'auth_unix_ro = "none"',
            'unix_sock_rw_perms = "0770"',
            "log_level = 3",
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
            # --listen: TCP never; TLS with `tls = true` (the lab's certificates).
            *(tls.libvirtd_settings(config, server) if config.tls
              else ["listen_tls = 0", "listen_tcp = 0"]),
            "",
        ]
    )


def qemu_conf(config: LabConfig, server: str) -> str:
    return "\n".join(
        [
            "# Written by `xencenter-lite lab up`; removed by `lab down`.",
            *(tls.qemu_settings(config, server) if config.tls else []),
            'user = "root"',
            'group = "root"',
            "dynamic_ownership = 0",
            "remember_owner = 0",
            'security_driver = "none"',
            'stdio_handler = "file"',
            # Inside `ip netns exec` /sys is a fresh sysfs without cgroup mounts.
            "cgroup_controllers = [ ]",
            "",
        ]
    )


def hosts_file(config: LabConfig) -> str:
    """/etc/hosts inside every server: the servers' names resolve to their management
    addresses, so libvirt's default migration address (the destination's hostname) works."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for server in config.servers:
        lines.append(f"{config.address(server.name, config.management_network)}\t{server.name}")
    return "\n".join(lines) + "\n"


def prepare_host_tree(config: LabConfig, server: str) -> None:
    host = config.host_dir(server)
    for sub in STATE_SUBDIRS:
        (host / sub).mkdir(parents=True, exist_ok=True)
    (host / "sr").mkdir(exist_ok=True)
    (host / "log" / "qemu").mkdir(exist_ok=True)  # QEMU logs and the guests' serial logs
    (host / "etc" / "libvirtd.conf").write_text(libvirtd_conf(config, server))
    (host / "etc" / "qemu.conf").write_text(qemu_conf(config, server))
    (host / "etc" / "hosts").write_text(hosts_file(config))
    for mount_point in MOUNT_POINTS:
        mount_point.mkdir(parents=True, exist_ok=True)


def start(config: LabConfig, server: str, cpu_group: Path | None = None) -> int:
    """Start the server's libvirtd (not waiting for it), in `cpu_group` when given (with
    everything it starts); returns the PID of the tini that runs it (wait_until_ready gives
    libvirtd's own)."""
    if not os.path.isfile(TINI):
        raise LabError("`tini` is not installed; install it (apt-get install tini).")
    host = config.host_dir(server)
    # libvirtd compares the host's CPUID with its cached QEMU probe and probes again (~4 s)
    # when they differ; on some (nested) machines the vCPUs report different CPUID leaves, so
    # every lab libvirtd runs on the same CPU. libvirt gives QEMU all CPUs again.
    argv = [
        "taskset",
        "--cpu-list",
        str(min(os.sched_getaffinity(0))),
        "ip",
        "netns",
        "exec",
        config.namespace(server),
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "slave",
        "sh",
        "-c",
        _START_SCRIPT,
        "xcl-lab-libvirtd",
        *(str(host / sub) for sub in STATE_SUBDIRS),
        server,
        str(host / "etc" / "hosts"),
        TINI,
        LIBVIRTD,
        *(e for e in HIDDEN_EMULATORS if os.path.isfile(e)),
    ]
    if cpu_group is not None:
        # Joined before `ip netns exec`, which mounts a /sys of its own without cgroups.
        argv = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cpu_group), *argv]
    # sh, taskset, `ip netns exec`, unshare and `sh -c 'exec ...'` all exec: the PID is tini's.
    return spawn(argv, host / "log" / "libvirtd.out")


def copy_capabilities(config: LabConfig, source: str, target: str) -> None:
    """Give `target` the QEMU probe results of `source` (same machine, same binaries)."""
    src = config.host_dir(source) / CAPS_CACHE
    dst = config.host_dir(target) / CAPS_CACHE
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        for item in src.glob("*.xml"):
            shutil.copy2(item, dst / item.name)


def responds(config: LabConfig, server: str) -> bool:
    if not config.socket_path(server).exists():
        return False
    proc = run(["virsh", "-c", config.uri(server), "version"], check=False, timeout=10)
    return proc.returncode == 0


def wait_until_ready(config: LabConfig, server: str, pid: int) -> int:
    """Wait until the libvirtd started as `pid` (see start) answers; returns its own PID."""
    deadline = time.monotonic() + START_TIMEOUT
    pid_file = config.host_dir(server) / "run" / "libvirtd.pid"
    while True:
        if not process_alive(pid):
            raise LabError(
                f"libvirtd of {server} exited during start-up.\n{log_tail(config, server)}"
            )
        if responds(config, server):
            with contextlib.suppress(OSError, ValueError):
                own = int(pid_file.read_text().strip())
                if is_libvirtd(own):
                    return own
        if time.monotonic() > deadline:
            raise LabError(
                f"libvirtd of {server} (PID {pid}) did not answer on "
                f"{config.socket_path(server)} within {START_TIMEOUT:.0f} s.\n"
                f"{log_tail(config, server)}"
            )
        time.sleep(0.05)


def log_tail(config: LabConfig, server: str, lines: int = 15) -> str:
    parts = []
    for name in ("libvirtd.out", "libvirtd.log"):
        path = config.host_dir(server) / "log" / name
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            parts.append(f"--- last lines of {path}:\n" + "\n".join(text))
    return "\n".join(parts) or "(libvirtd wrote no log)"


def under_reaper(pid: int) -> bool:
    """Whether process `pid` runs under tini (labs brought up before it did not)."""
    ppid = parent_pid(pid)
    try:
        return ppid is not None and os.path.basename(os.readlink(f"/proc/{ppid}/exe")) == "tini"
    except OSError:
        return False


def is_libvirtd(pid: int) -> bool:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return os.path.basename(exe) == "libvirtd"
