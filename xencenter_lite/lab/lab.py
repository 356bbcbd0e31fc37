"""The built-in lab: several real libvirt servers on this machine, built and removed on demand.

`up` builds everything the configuration describes (namespaces, links, libvirtds, SRs,
guests) and writes the inventory; `down` removes exactly what the lab created, found by its
state file, its PID files and the lab's own mount namespaces; `status` only looks.

What the lab created is recorded in {state_dir}/lab-state.json as it goes, so a crashed or
half-built lab is always cleaned up by the next `up` or `down`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from xencenter_lite.lab import daemon, domains, guestimage, network, ssh, system, tls
from xencenter_lite.lab.config import (
    SERVER_NAME,
    DiskConfig,
    GuestConfig,
    LabConfig,
)
from xencenter_lite.lab.errors import LabError
from xencenter_lite.lab.inventory import write_inventory

STATE_FILE = "lab-state.json"
MARKER_FILE = ".xencenter-lite-lab"  # only a directory holding this is ever deleted by down


def config_fingerprint(config: LabConfig) -> str:
    data = dataclasses.asdict(dataclasses.replace(config, path=None))
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class Lab:
    def __init__(self, config: LabConfig, log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._log = log or (lambda _line: None)
        self._started = time.monotonic()

    # ---- public ----------------------------------------------------------------------------
    def up(self) -> Path:
        """Build the lab (or keep a healthy one); returns the inventory file's path."""
        cfg = self.config
        self._started = time.monotonic()
        self._say(f"Lab '{cfg.name}': state in {cfg.state_dir}")
        for what in system.ensure_libvirt_accounts():
            self._say(f"Created {what} (libvirtd 9.0 needs it)")
        state = self._read_state()
        if self._healthy(state):
            path = write_inventory(cfg)
            self._say("The lab is already running and healthy; inventory rewritten.")
            return path
        if self._has_leftovers(state):
            self._say("Found a previous, incomplete or changed lab: removing it first.")
            self._teardown(state)
        self._create_state_dir()
        try:
            return self._build()
        except BaseException as exc:
            self._say("Start-up failed: removing what was built.")
            try:
                self._teardown(self._read_state())
            except LabError as cleanup:
                raise LabError(f"{exc}\nCleaning up failed as well: {cleanup}") from exc
            raise

    def down(self) -> None:
        state = self._read_state()
        self._started = time.monotonic()
        if not self._has_leftovers(state):
            self._say("The lab is not running.")
            return
        self._teardown(state)
        self._say(f"Lab '{self.config.name}' removed ({self._elapsed()}).")

    def status(self) -> str:
        cfg = self.config
        state = self._read_state()
        if not self._has_leftovers(state):
            return f"The lab is not running. (lab '{cfg.name}', state_dir {cfg.state_dir})"
        healthy = self._healthy(state)
        lines = [
            f"Lab '{cfg.name}': {'running' if healthy else 'NOT healthy (run lab up or down)'}"
            f" - state in {cfg.state_dir}",
        ]
        if cfg.inventory_path.exists():
            lines.append(f"Inventory: {cfg.inventory_path}")
        if state and state.get("disk_cache"):
            lines.append(f"Guests' disks: cache={state['disk_cache']}")
        for server in cfg.servers:
            pid = self._libvirtd_pid(state, server.name)
            addresses = ", ".join(
                f"{n.name} {cfg.address(server.name, n.name)}" for n in cfg.networks
            )
            running = pid is not None and daemon.responds(cfg, server.name)
            if running:
                lines.append(f"{server.name}: running (libvirtd PID {pid}) - {addresses}")
            elif pid is not None:
                lines.append(f"{server.name}: NOT answering (libvirtd PID {pid}) - {addresses}")
            else:
                lines.append(f"{server.name}: NOT running - {addresses}")
            lines.append(f"  uri: {cfg.uri(server.name)}")
            if running:
                lines += self._describe_server(server.name)
            else:
                for sr in cfg.srs_on(server.name):
                    lines.append(f"  SR {sr.name}: {cfg.sr_path(sr, server.name)}")
        stray = [p for p in self._lab_processes() if p[1] == "qemu" and not healthy]
        if stray:
            lines.append("QEMU processes: " + ", ".join(f"{pid} ({srv})" for pid, _, srv in stray))
        return "\n".join(lines)

    # ---- building --------------------------------------------------------------------------
    def _build(self) -> Path:
        cfg = self.config
        domain_type = self._domain_type()
        state = self._read_state() or {}
        state.update(
            lab=cfg.name,
            fingerprint=config_fingerprint(cfg),
            complete=False,
            namespaces=cfg.namespaces,
            mounts=[],
            servers={},
            mount_points_created=[],
        )
        self._write_state(state)

        if cfg.tls:
            tls.prepare(cfg)
        for server in cfg.servers:
            for mount_point in daemon.MOUNT_POINTS:
                if not mount_point.exists():
                    state["mount_points_created"].append(str(mount_point))
            daemon.prepare_host_tree(cfg, server.name)
        self._write_state(state)

        for _sr, _server, path in cfg.sr_paths():
            path.mkdir(parents=True, exist_ok=True)
        for path, size in cfg.tmpfs_dirs():
            state["mounts"].append(str(path))
            self._write_state(state)
            system.mount_tmpfs(path, size)
        cache = self._disk_cache()
        state["disk_cache"] = cache or "default"
        self._write_state(state)
        # The Linux guests' image (apt look-ups, a first build) is found meanwhile.
        images = ThreadPoolExecutor(max_workers=1)
        image_job = (images.submit(guestimage.ensure_image, self._say)
                     if any(g.linux for g in cfg.guests) else None)
        images.shutdown(wait=False)
        disks = [(g, d) for g in cfg.guests for d in g.disks]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda gd: self._create_disk(*gd), disks))
        self._say(f"SRs and {len(disks)} guest disks ready ({self._elapsed()})")

        if "netns_dir" not in state:  # to leave /run/netns as it was found
            state["netns_dir"] = {
                "existed": network.NETNS_DIR.exists(),
                "mounted": system.is_mount_point(network.NETNS_DIR),
            }
            self._write_state(state)
        network.build(cfg)
        self._say(
            f"Networks ready: {', '.join(f'{n.name} {n.subnet}' for n in cfg.networks)} "
            f"({self._elapsed()})"
        )

        # The first libvirtd probes QEMU; the others start from its results, in parallel.
        first, *others = [s.name for s in cfg.servers]
        self._start_daemon(state, first)
        self._wait_for_daemon(state, first)
        for server_name in others:
            daemon.copy_capabilities(cfg, first, server_name)
            self._start_daemon(state, server_name)
        for server_name in others:
            self._wait_for_daemon(state, server_name)
        self._say(
            "libvirtd running: "
            + ", ".join(f"{s} (PID {v['pid']})" for s, v in state["servers"].items())
            + f" ({self._elapsed()})"
        )

        if cfg.ssh:
            self._start_ssh(state)

        image = image_job.result() if image_job else None
        if image is not None:
            self._say(f"Linux guest image: {image.kernel.parent} ({self._elapsed()})")
        with ThreadPoolExecutor(max_workers=len(cfg.servers)) as pool:
            futures = [
                pool.submit(self._configure_server, s.name, domain_type, image, cache)
                for s in cfg.servers
            ]
            for future in futures:
                future.result()
        for server in cfg.servers:
            guests = cfg.guests_on(server.name)
            described = ", ".join(f"{g.name} ({g.state})" for g in guests) or "no guests"
            srs = ", ".join(sr.name for sr in cfg.srs_on(server.name)) or "no SRs"
            self._say(f"{server.name}: {described}; SRs: {srs}")

        path = write_inventory(cfg)
        state["complete"] = True
        self._write_state(state)
        self._say(
            f"Lab '{cfg.name}' is up ({self._elapsed()}, guests as domain type {domain_type})"
        )
        return path

    def _start_ssh(self, state: dict[str, Any]) -> None:
        """sshd in every server, this machine on the management network, the lab's client
        configuration; then each server must answer `ssh root@ADDRESS`."""
        cfg = self.config
        ssh.prepare(cfg)
        network.add_console(cfg)
        state["ssh_client_config"] = str(cfg.ssh_client_config)
        self._write_state(state)
        ssh.install_client_config(cfg)
        sshd = state.setdefault("sshd", {})
        for server in cfg.servers:
            sshd[server.name] = ssh.start(cfg, server.name, state["servers"][server.name]["pid"])
            self._write_state(state)
        for server in cfg.servers:
            ssh.wait_until_ready(cfg, server.name, sshd[server.name])
        self._say(f"sshd running in every server; this machine is {cfg.console_address} on "
                  f"the {cfg.management_network} network ({self._elapsed()})")

    def restart_server(self, server: str) -> None:
        """Start `server`'s libvirtd again after it died; its running guests stay as they are.

        libvirtd reconnects to the QEMU processes it left behind, as after a real crash."""
        state = self._read_state()
        if not state or server not in state.get("servers", {}):
            raise LabError(f"The lab has no server '{server}' running; run `lab up` first.")
        pid = state["servers"][server]["pid"]
        if system.process_alive(pid) and daemon.is_libvirtd(pid):
            return
        self._start_daemon(state, server)
        self._wait_for_daemon(state, server)

    @property
    def cpu_group_name(self) -> str:
        """The CPU group of the lab's servers. They stand for other machines: on this one
        they must not take the CPU from the console or the commands an operator runs beside
        them, so all their processes (tini, libvirtd and the QEMUs it starts) share one
        group that gets only the time nothing else wants. (Renicing them would not do:
        libvirt starts every QEMU in a session of its own, and with autogroup scheduling
        each session weighs as much as the console's.)"""
        return f"xencenter-lite-{self.config.name}"

    def _start_daemon(self, state: dict[str, Any], server: str) -> None:
        group = system.idle_cpu_group(self.cpu_group_name)
        state["cpu_group"] = str(group) if group else None
        pid = daemon.start(self.config, server, group)
        state["servers"][server] = {"pid": pid}
        self._write_state(state)

    def _wait_for_daemon(self, state: dict[str, Any], server: str) -> None:
        """Wait for the server's libvirtd; the state keeps its PID (not its tini's)."""
        pid = daemon.wait_until_ready(self.config, server, state["servers"][server]["pid"])
        state["servers"][server] = {"pid": pid}
        self._write_state(state)

    def _domain_type(self) -> str:
        accel = self.config.accel
        if accel == "tcg":
            return "qemu"
        if system.kvm_usable():
            if accel == "auto" and system.kvm_is_pvm() and any(g.linux for g in self.config.guests):
                self._say("KVM here is kvm_pvm, which cannot run a stock Linux kernel at speed: "
                          "the guests run under TCG.")
                return "qemu"
            return "kvm"
        if accel == "kvm":
            raise LabError(
                'accel = "kvm" but /dev/kvm cannot be opened here; set accel = "auto" or '
                '"tcg" in the lab file.'
            )
        return "qemu"

    def _disk_cache(self) -> str | None:
        """The guests' disks bypass the host's page cache (cache="none", as OpenStack and
        oVirt set them) where every SR's filesystem allows direct I/O; else the hypervisor's
        default. With the page cache, a disk copied to a server sits in its memory until
        the copy ends and is then written out at once: the migration waited for that."""
        if all(system.direct_io_works(path) for _sr, _server, path in self.config.sr_paths()):
            return "none"
        self._say("An SR's filesystem cannot do direct I/O: the guests' disks use the host's "
                  "page cache.")
        return None

    def _create_disk(self, guest: GuestConfig, disk: DiskConfig) -> None:
        path = domains.disk_path(self.config, guest, disk)
        system.run(
            ["qemu-img", "create", "-q", "-f", disk.format, str(path), f"{disk.size_mib}M"],
            what=f"creating disk {path}",
        )
        system.run(
            ["qemu-io", "-f", disk.format, "-c", f"write -P 0x5a 0 {disk.data_mib}M", str(path)],
            what=f"writing the test pattern to {path}",
        )

    def _configure_server(
        self,
        server: str,
        domain_type: str,
        image: guestimage.GuestImage | None,
        cache: str | None,
    ) -> None:
        cfg = self.config
        with tempfile.TemporaryDirectory(prefix="xcl-lab-") as tmp:
            for i, sr in enumerate(cfg.srs_on(server)):
                xml = Path(tmp) / f"pool-{i}.xml"
                xml.write_text(domains.pool_xml(cfg, sr, server))
                self._virsh(server, "pool-define", str(xml))
                self._virsh(server, "pool-start", sr.name)
                self._virsh(server, "pool-autostart", sr.name)
            for guest in cfg.guests_on(server):
                xml = Path(tmp) / f"guest-{guest.name}.xml"
                xml.write_text(domains.guest_xml(cfg, guest, domain_type, image, cache))
                self._virsh(server, "define", str(xml))
                if guest.running:
                    self._virsh(server, "start", guest.name)

    def _virsh(self, server: str, *args: str, check: bool = True) -> str:
        proc = system.run(
            ["virsh", "-q", "-c", self.config.uri(server), *args],
            check=check,
            what=f"virsh {args[0]} on {server}" + (f" ({args[1]})" if len(args) > 1 else ""),
        )
        return proc.stdout

    # ---- state -----------------------------------------------------------------------------
    def _create_state_dir(self) -> None:
        sd = self.config.state_dir
        if sd.exists() and not (sd / MARKER_FILE).exists() and any(sd.iterdir()):
            raise LabError(
                f"{sd} exists and is not a lab state directory; empty it, or set another "
                "state_dir in the lab file."
            )
        created = []
        for parent in reversed(sd.parents):
            if not parent.exists():
                created.append(str(parent))
        sd.mkdir(parents=True, exist_ok=True)
        (sd / MARKER_FILE).write_text(f"{self.config.name}\n")
        state = self._read_state() or {}
        state["parents_created"] = created + state.get("parents_created", [])
        self._write_state(state)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.config.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write_state(self, state: dict[str, Any]) -> None:
        path = self.config.state_dir / STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, path)

    # ---- inspection ------------------------------------------------------------------------
    def _server_names(self) -> list[str]:
        """The config's servers plus any a previous run recorded (a since-edited config)."""
        names = [s.name for s in self.config.servers]
        recorded = (self._read_state() or {}).get("servers", {})
        if isinstance(recorded, dict):
            names += [n for n in recorded if n not in names and SERVER_NAME.fullmatch(n)]
        return names

    def _owned_by(self, pid: int, servers: list[str] | None = None) -> str | None:
        """The lab server whose mount namespace `pid` lives in (its /run/libvirt is ours)."""
        for server in servers or self._server_names():
            run_dir = self.config.host_dir(server) / "run"
            if system.same_file(f"/proc/{pid}/root/run/libvirt", run_dir):
                return server
        return None

    def _lab_processes(self) -> list[tuple[int, str, str]]:
        """(pid, "libvirtd" | "qemu", server) of every live process the lab started.

        Candidates come from the state file, libvirtd's and QEMU's PID files and a scan of
        /proc for libvirtd/QEMU executables; a candidate counts only if it runs inside one of
        this lab's mount namespaces (its /run/libvirt is the server's run directory).
        """
        cfg = self.config
        candidates: set[int] = set()
        state = self._read_state() or {}
        for info in state.get("servers", {}).values():
            with contextlib.suppress(TypeError, ValueError):
                candidates.add(int(info["pid"]))
        servers = self._server_names()
        for server in servers:
            run_dir = cfg.host_dir(server) / "run"
            for pid_file in [run_dir / "libvirtd.pid", *run_dir.glob("qemu/*.pid")]:
                with contextlib.suppress(OSError, ValueError):
                    candidates.add(int(pid_file.read_text().strip()))
        for pid in system.all_pids():
            exe = system.process_exe(pid)
            if exe and _kind(exe):
                candidates.add(pid)
        found = []
        for pid in sorted(candidates):
            exe = system.process_exe(pid)
            kind = _kind(exe) if exe else None
            if kind is None or not system.process_alive(pid):
                continue
            owner = self._owned_by(pid, servers)
            if owner is not None:
                found.append((pid, kind, owner))
        return found

    def _libvirtd_pid(self, state: dict[str, Any] | None, server: str) -> int | None:
        try:
            pid = int((state or {})["servers"][server]["pid"])
        except (KeyError, TypeError, ValueError):
            return None
        if daemon.is_libvirtd(pid) and system.process_alive(pid) and self._owned_by(pid):
            return pid
        return None

    def _healthy(self, state: dict[str, Any] | None) -> bool:
        cfg = self.config
        if not state or not state.get("complete"):
            return False
        if state.get("fingerprint") != config_fingerprint(cfg):
            return False
        if not cfg.inventory_path.exists():
            return False
        if not all(network.namespace_exists(ns) for ns in cfg.namespaces):
            return False
        if any(not system.is_mount_point(path) for path, _size in cfg.tmpfs_dirs()):
            return False
        for server in cfg.servers:
            pid = self._libvirtd_pid(state, server.name)
            if pid is None or not daemon.under_reaper(pid):
                return False
            # A lab from before the servers' CPU group or its guests' cache mode, or one
            # whose group has gone.
            if "cpu_group" not in state or "disk_cache" not in state or (
                state["cpu_group"] and not system.in_cpu_group(pid, self.cpu_group_name)
            ):
                return False
            if not daemon.responds(cfg, server.name):
                return False
            sshd = (state.get("sshd") or {}).get(server.name)
            if cfg.ssh and not (isinstance(sshd, int) and system.process_alive(sshd)):
                return False
        return not cfg.ssh or cfg.ssh_client_config.exists()

    def _has_leftovers(self, state: dict[str, Any] | None) -> bool:
        cfg = self.config
        return bool(
            state
            or cfg.state_dir.exists()
            or any(network.namespace_exists(ns) for ns in self._namespaces(state))
            or self._lab_processes()
        )

    def _namespaces(self, state: dict[str, Any] | None) -> list[str]:
        """The config's namespaces plus any recorded ones (only names with the lab's prefix)."""
        names = list(self.config.namespaces)
        for ns in (state or {}).get("namespaces", []):
            if isinstance(ns, str) and ns.startswith(f"{self.config.name}-") and ns not in names:
                names.append(ns)
        return names

    def _describe_server(self, server: str) -> list[str]:
        lines = []
        names = self._virsh(server, "list", "--all", "--name", check=False).split()
        guests = []
        for name in names:
            domstate = self._virsh(server, "domstate", name, check=False).strip() or "unknown"
            guests.append(f"{name} ({domstate})")
        lines.append("  guests: " + (", ".join(guests) or "none"))
        active = {
            n.strip() for n in self._virsh(server, "pool-list", "--name", check=False).splitlines()
        }
        for name in self._virsh(server, "pool-list", "--all", "--name", check=False).splitlines():
            name = name.strip()
            if not name:
                continue
            sr = next((s for s in self.config.srs if s.name == name), None)
            path = str(self.config.sr_path(sr, server)) if sr else "(not from the lab file)"
            flag = "active" if name in active else "INACTIVE"
            lines.append(f"  SR {name}: {path} ({flag})")
        return lines

    # ---- teardown --------------------------------------------------------------------------
    def _teardown(self, state: dict[str, Any] | None) -> None:
        cfg = self.config
        processes = self._lab_processes()
        if processes:
            self._say(
                "Stopping "
                + ", ".join(f"{kind} {pid} ({server})" for pid, kind, server in processes)
            )
            left = system.stop_processes([pid for pid, _, _ in processes])
            if left:
                raise LabError(
                    f"processes {', '.join(map(str, left))} did not stop even after SIGKILL; "
                    "stop them by hand, then run `lab down` again."
                )
        system.remove_cpu_group(self.cpu_group_name)
        recorded_config = (state or {}).get("ssh_client_config")
        if cfg.ssh or recorded_config == str(cfg.ssh_client_config):
            ssh.remove_client_config(cfg)
        sd = cfg.state_dir
        recorded = [Path(p) for p in (state or {}).get("mounts", []) if isinstance(p, str)]
        for path in [*system.mounts_under(sd), *recorded]:
            if system.is_mount_point(path) and (path == sd or sd in path.parents):
                system.unmount(path)
        for ns in self._namespaces(state):
            if network.namespace_exists(ns):
                network.delete_namespace(ns)
        netns_dir = (state or {}).get("netns_dir")
        if isinstance(netns_dir, dict) and not network.existing_namespaces():
            if not netns_dir.get("mounted") and system.is_mount_point(network.NETNS_DIR):
                system.unmount(network.NETNS_DIR)
            if not netns_dir.get("existed"):
                with contextlib.suppress(OSError):
                    network.NETNS_DIR.rmdir()
        if sd.exists():
            if system.mounts_under(sd):
                raise LabError(
                    f"{sd} still has mounts under it: "
                    f"{', '.join(map(str, system.mounts_under(sd)))}; unmount them and run "
                    "`lab down` again."
                )
            if (sd / MARKER_FILE).exists():
                shutil.rmtree(sd)
            elif not any(sd.iterdir()):
                sd.rmdir()
            else:
                raise LabError(
                    f"{sd} is not a lab state directory (no {MARKER_FILE}); left it alone."
                )
        for directory in (state or {}).get("parents_created", []):
            with contextlib.suppress(OSError):
                Path(directory).rmdir()  # only when empty
        for mount_point in (state or {}).get("mount_points_created", []):
            if not _in_use_as_mount_point(Path(mount_point)):
                with contextlib.suppress(OSError):
                    Path(mount_point).rmdir()

    # ---- output ----------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        self._log(line)

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:.1f} s"


def _kind(exe: str) -> str | None:
    base = os.path.basename(exe)
    if base == "libvirtd":
        return "libvirtd"
    if base.startswith("qemu-system-"):
        return "qemu"
    if base in ("sshd", "ssh", "virt-ssh-helper"):  # (`ssh = true`: in the servers)
        return base
    return None


def _iter_mountinfo() -> Iterator[str]:
    for pid in system.all_pids():
        with contextlib.suppress(OSError):
            yield from Path(f"/proc/{pid}/mountinfo").read_text().splitlines()


def _in_use_as_mount_point(path: Path) -> bool:
    """True if any process on the machine (another lab's libvirtd...) mounts something there."""
    target = str(path)
    for line in _iter_mountinfo():
        fields = line.split()
        if len(fields) > 4 and system.unescape_mount(fields[4]) == target:
            return True
    return False
