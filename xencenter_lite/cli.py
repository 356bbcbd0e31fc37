"""The xencenter-lite command: scriptable migrations on the same engine as the console.

Exit codes: 0 all done; 1 a migration or power operation failed or was cancelled; 2 bad
input or refused by the checks (nothing moved, nothing done).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from xencenter_lite.core.checks import Problem, blocking, estimate_seconds
from xencenter_lite.core.cleanup import Cleanup
from xencenter_lite.core.copy import CopyRequest
from xencenter_lite.core.inventory import InventoryError, load_inventory, resolve_inventory_path
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.core.model import VM, Sharing, Snapshot, VmState, describe_nic_target
from xencenter_lite.core.placement import Evacuation, Rating, place_together
from xencenter_lite.core.plan import DataPath, MigrationPlan, MigrationRequest
from xencenter_lite.core.policy import (
    DEFAULT_MAX_DOWNTIME_MS,
    POST_COPY_RISK,
    MigrationSettings,
    OnTimeout,
    Policy,
)
from xencenter_lite.core.power import PowerAction, check_power, check_start_on
from xencenter_lite.core.units import format_bytes, format_duration

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
CLI_RECONCILE_WAIT = 10.0  # seconds


class UsageError(Exception):
    """Bad input from the command line: exit 2, nothing changed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 2 with our own wording
        self.print_usage(sys.stderr)
        raise UsageError(f"{message}; see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xencenter-lite",
                description="Move running virtual machines between libvirt servers.")
    p.add_argument("--inventory", metavar="PATH",
                   help="inventory file (default: $XENCENTER_LITE_INVENTORY, then "
                        "~/.config/xencenter-lite/inventory.toml)")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    ls = sub.add_parser("list", help="pools, servers, SRs and VMs")
    ls.add_argument("--json", action="store_true")

    def plan_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--to", required=True, metavar="SERVER",
                        help="destination server, or 'auto': the best server that can take "
                             "each VM (see the placement in --json)")
        sp.add_argument("--sr", metavar="SR", help="put every copied disk on this SR")
        sp.add_argument("--disk", action="append", default=[], metavar="DEV=SR",
                        help="put disk DEV on SR (repeatable; wins over --sr)")
        sp.add_argument("--nic", action="append", default=[], metavar="MAC=NETWORK",
                        help="plug the VM's NIC MAC into NETWORK (a libvirt network) or "
                             "bridge:NAME on the destination (repeatable; others keep the "
                             "network or bridge of the same name)")
        sp.add_argument("--network", metavar="NET",
                        help="network that carries the migration (default: the first "
                             "non-management network)")
        sp.add_argument("--bandwidth", type=int, metavar="MIB_S",
                        help="limit the transfer to this many MiB/s")
        sp.add_argument("--tls", action="store_true",
                        help="encrypt the migration with libvirt's TLS (the servers need "
                             "certificates)")
        sp.add_argument("--via", choices=["direct", "stream"],
                        help="a halted VM's disks: directly between the servers (the VM "
                             "started paused, never run) or through this console's volume "
                             "streams (default: directly when both servers have the memory)")
        sp.add_argument("--resume", action="store_true",
                        help="a paused VM: resume it on the destination (default: it stays "
                             "paused)")
        sp.add_argument("--policy", choices=[p.value for p in Policy],
                        help="how a busy VM's live migration is made to finish (default: the "
                             "inventory's [migration] policy, else auto-converge). post-copy: "
                             + POST_COPY_RISK)
        sp.add_argument("--max-downtime", type=int, metavar="MS",
                        help=f"the longest the VM may be stopped at the end (default "
                             f"{DEFAULT_MAX_DOWNTIME_MS})")
        sp.add_argument("--timeout", type=int, metavar="S",
                        help="give the memory copy this long, then --on-timeout")
        sp.add_argument("--on-timeout", choices=[o.value for o in OnTimeout],
                        help="what happens at --timeout: abort (the VM keeps running where "
                             "it was; default), post-copy, or suspend (pause the guest so "
                             "the copy completes; resumed on the destination)")
        sp.add_argument("--compress", action="store_true",
                        help="compress memory pages (xbzrle), for a slow network")
        sp.add_argument("--parallel", type=int, metavar="N",
                        help="send memory over N connections")
        sp.add_argument("--json", action="store_true")

    pc = sub.add_parser("precheck", help="check a migration without moving anything")
    pc.add_argument("vms", nargs=1, metavar="VM")
    plan_args(pc)

    mg = sub.add_parser("migrate", help="migrate VMs: running and paused ones live, halted "
                                        "ones with their disks (queued, 3 at a time)")
    mg.add_argument("vms", nargs="+", metavar="VM")
    plan_args(mg)

    md = sub.add_parser("move-disk", help="move one disk of a VM to another SR of its server "
                                          "(live while it runs; a plain copy while halted)")
    md.add_argument("vm", metavar="VM")
    md.add_argument("dev", metavar="DEV")
    md.add_argument("--sr", required=True, metavar="SR")
    md.add_argument("--bandwidth", type=int, metavar="MIB_S")
    md.add_argument("--json", action="store_true")

    cp = sub.add_parser("copy", help="copy a halted VM: a new VM with its own copies of the "
                                      "disks, halted")
    cp.add_argument("vm", metavar="VM")
    cp.add_argument("--name", required=True, metavar="NEW", help="the new VM's name")
    cp.add_argument("--to", metavar="SERVER", help="where the copy goes (default: the VM's "
                                                   "own server)")
    cp.add_argument("--sr", metavar="SR", help="put every disk of the copy on this SR")
    cp.add_argument("--disk", action="append", default=[], metavar="DEV=SR",
                    help="put the copy of disk DEV on SR (repeatable; wins over --sr)")
    cp.add_argument("--json", action="store_true")

    for action, text in (("start", "start halted VMs"),
                         ("shutdown", "shut VMs down (the guest is asked; --force turns them "
                                      "off)"),
                         ("reboot", "reboot VMs (the guest is asked)"),
                         ("suspend", "suspend (pause) running VMs"),
                         ("resume", "resume suspended (paused) VMs")):
        op = sub.add_parser(action, help=text)
        op.add_argument("vms", nargs="+", metavar="VM")
        if action == "start":
            op.add_argument("--on", metavar="SERVER",
                            help="Start on Server: a server that sees the VM's disks where "
                                 "they are (a pool member on shared storage); its definition "
                                 "moves there first")
        if action == "shutdown":
            op.add_argument("--force", action="store_true",
                            help="turn the VM off at once (Force Shut Down)")
            op.add_argument("--timeout", type=float, default=120.0, metavar="S",
                            help="how long the guest gets to shut down (default 120 s)")
        op.add_argument("--json", action="store_true")

    mm = sub.add_parser("maintenance", help="enter or leave maintenance mode on a server")
    mm_sub = mm.add_subparsers(dest="action", parser_class=_Parser, required=True)
    enter = mm_sub.add_parser("enter", help="move every running VM off the server, then keep "
                                            "VMs off it")
    enter.add_argument("server", metavar="SERVER")
    enter.add_argument("--parallel", type=int, default=3, metavar="N",
                       help="how many VMs move at once (default 3)")
    enter.add_argument("--send", action="append", default=[], metavar="VM=SERVER",
                       help="send VM to SERVER instead of the best server (repeatable)")
    enter.add_argument("--leave", action="append", default=[], metavar="VM",
                       help="leave VM running on the server (repeatable)")
    enter.add_argument("--dry-run", action="store_true",
                       help="show the plan and its problems; change nothing")
    enter.add_argument("--json", action="store_true")
    leave = mm_sub.add_parser("exit", help="take the server out of maintenance mode and bring "
                                           "its VMs back")
    leave.add_argument("server", metavar="SERVER")
    leave.add_argument("--no-return", action="store_true",
                       help="leave the VMs where they are now")
    leave.add_argument("--parallel", type=int, default=3, metavar="N")
    leave.add_argument("--json", action="store_true")

    lab = sub.add_parser("lab", help="the built-in lab of real libvirt servers (root)")
    lab.add_argument("action", choices=["up", "down", "status"])
    lab.add_argument("--config", metavar="PATH", help="lab config (default: resources/lab.toml)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"xencenter-lite: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command is None:  # no command: open the console
        try:
            path = resolve_inventory_path(args.inventory)
            load_inventory(path)
        except InventoryError as exc:
            print(f"xencenter-lite: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if sys.platform.startswith("linux") and not any(
            os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
        ):
            print("xencenter-lite: no display to open the console on (set DISPLAY); for the "
                  "command line see 'xencenter-lite --help'", file=sys.stderr)
            return EXIT_BAD_INPUT
        from xencenter_lite.ui.app import run_gui

        return run_gui(path)
    if args.command == "lab":
        from xencenter_lite.lab import run_lab_command

        return run_lab_command(args.action, Path(args.config) if args.config else None)
    # What the engine logs as a warning (a server that cannot be reached, one listed twice)
    # is said once, as the command's own words; the rest stays quiet.
    logging.basicConfig(level=logging.WARNING, format="xencenter-lite: %(message)s")
    try:
        inventory = load_inventory(resolve_inventory_path(args.inventory))
    except InventoryError as exc:
        print(f"xencenter-lite: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        code = asyncio.run(_main(args, inventory))
        sys.stdout.flush()  # here, where a reader gone away is still ours to handle
        return code
    except UsageError as exc:
        print(f"xencenter-lite: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`list | head`): say nothing more, and let the interpreter's
        # last flush of stdout go nowhere instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    finally:
        # The command is over and the process ends: the interpreter's last collection of
        # everything still allocated (libvirt's objects, the engine's) would take 20-30 ms.
        gc.freeze()


async def _main(args: argparse.Namespace, inventory: Any) -> int:
    from xencenter_lite.engine import DEFAULT_CONCURRENCY, Engine

    # `maintenance --parallel N` may move more VMs at once than the queue's default.
    engine = Engine(inventory, concurrency=max(DEFAULT_CONCURRENCY,
                                               getattr(args, "parallel", 0) or 0))
    # A command waits this long for a server that stopped answering mid-migration to come
    # back and say where the VM runs; then it ends, and what the job made is finished by
    # the next command that can prove it safe (the console waits longer: it keeps running).
    engine.reconcile_wait = CLI_RECONCILE_WAIT
    await engine.start(watch=False)
    for note in engine.settler.notes:
        print(f"xencenter-lite: {note}", file=sys.stderr)
    try:
        if args.command == "list":
            return cmd_list(engine.snapshot(), args.json, sys.stdout,
                            engine.pending_cleanups())
        if args.command in ("precheck", "migrate"):
            return await cmd_migrate(engine, args, execute=args.command == "migrate")
        if args.command == "move-disk":
            return await cmd_move_disk(engine, args)
        if args.command == "copy":
            return await cmd_copy(engine, args)
        if args.command == "maintenance":
            return await cmd_maintenance(engine, args)
        if args.command in POWER_COMMANDS:
            return await cmd_power(engine, args)
        raise UsageError(f"unknown command {args.command}")
    finally:
        await engine.close()


# ---- list ---------------------------------------------------------------------------------
def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    def sr_owner(sr_server: str, shared: bool) -> dict[str, str | None]:
        pool = snap.servers[sr_server].pool if sr_server in snap.servers else None
        return {"pool": pool, "server": None} if shared else {"pool": None, "server": sr_server}

    srs: list[dict[str, Any]] = []
    seen_shared: set[tuple[str | None, str]] = set()
    for sr in snap.srs:
        if sr.shared:
            pool = snap.servers[sr.server].pool
            if (pool, sr.name) in seen_shared:
                continue
            seen_shared.add((pool, sr.name))
        srs.append({"name": sr.name, **sr_owner(sr.server, sr.shared), "shared": sr.shared,
                    "sharing": sr.sharing.value, "type": sr.type, "path": sr.path,
                    "capacity": sr.capacity, "free": sr.available, "supported": sr.supported})
    return {
        "pools": [{"name": p.name, "members": list(p.members), "default_sr": p.default_sr,
                   "ha_enabled": p.ha_enabled} for p in snap.pools.values()],
        "servers": [{
            "name": s.name, "pool": s.pool, "connected": s.connected, "error": s.error,
            "host_uuid": s.host_uuid or None, "maintenance": s.maintenance,
            "networks": dict(s.addresses), "memory_total": s.host_memory,
            "memory_free": snap.memory_available(s.name) if s.connected else 0,
            "virtual_networks": [{"name": n.name, "active": n.active, "bridge": n.bridge,
                                  "forward": n.forward} for n in s.virtual_networks],
            "bridges": sorted(s.bridges),
        } for s in snap.servers.values()],
        "srs": srs,
        "vms": [{
            "name": v.name, "uuid": v.uuid, "server": v.server, "state": v.state.value,
            "memory": v.memory, "vcpus": v.vcpus, "home_server": v.home_server,
            "folder": v.folder, "evacuated_from": v.evacuated_from,
            "disks": [{"dev": d.dev, "device": d.device, "sr": d.sr, "path": d.path,
                       "format": d.format, "capacity": d.capacity,
                       "allocation": d.allocation} for d in v.disks],
            "persistent": v.persistent,
            "nics": [{"mac": n.mac, "type": n.kind, "source": n.source, "model": n.model}
                     for n in v.nics],
        } for v in snap.vms],
    }


def cleanup_json(c: Cleanup) -> dict[str, Any]:
    return {"kind": c.kind.value, "server": c.server, "vm": c.vm_name or None,
            "path": c.path or c.new_path or None, "job": c.job, "what": c.describe()}


def cmd_list(snap: Snapshot, as_json: bool, out: TextIO,
             pending: Sequence[Cleanup] = ()) -> int:
    if as_json:
        json.dump({**snapshot_json(snap),
                   "pending_cleanups": [cleanup_json(c) for c in pending]}, out, indent=2)
        out.write("\n")
        return EXIT_OK
    for srv in snap.servers.values():
        where = f"pool {srv.pool}" if srv.pool else "standalone"
        if srv.maintenance:
            where += ", in maintenance mode"
        if not srv.connected:
            out.write(f"{srv.name} ({where}): disconnected — {srv.error}\n")
            continue
        out.write(f"{srv.name} ({where}): {format_bytes(snap.memory_available(srv.name))} "
                  f"free for VMs; " + ", ".join(f"{n} {a}" for n, a in
                                                 sorted(srv.addresses.items())) + "\n")
        if srv.nic_targets:
            out.write("  NICs can use: " + ", ".join(srv.nic_targets) + "\n")
        for sr in sorted(snap.srs_on(srv.name), key=lambda s: s.name):
            if not sr.active:
                out.write(f"  SR {sr.name} ({sr.type}): inactive\n")
                continue
            kind = {Sharing.VERIFIED: "shared, verified", Sharing.NOT_SHARED:
                    "same name on each pool member, but not shared", Sharing.UNVERIFIED:
                    "not verified as shared"}.get(sr.sharing, "local")
            out.write(f"  SR {sr.name} ({kind}, {sr.type}): {format_bytes(sr.available)} free "
                      f"of {format_bytes(sr.capacity)}\n")
        for vm in sorted(snap.vms_on(srv.name), key=lambda v: (v.name, v.uuid)):
            state = vm.state.value + ("" if vm.persistent else ", transient")
            nics = "".join(f"; NIC {n.mac} on {n.described}" for n in vm.nics)
            out.write(f"  VM {vm.name} [{state}] {format_bytes(vm.memory)}, "
                      f"{vm.vcpus} vCPU; {_disks_text(vm)}{nics}\n")
    if pending:
        out.write("Pending clean-ups (done by the next command or console that can prove "
                  "them safe):\n")
        for c in pending:
            out.write(f"  {c.describe()} (after: {c.job})\n")
    return EXIT_OK


def _disks_text(vm: VM) -> str:
    parts = []
    for d in vm.disks:
        if d.is_cdrom:
            parts.append(f"{d.dev} CD " + (d.path or "(empty)"))
        else:
            parts.append(f"{d.dev} on {d.sr or d.path or '(no file)'}")
    return ", ".join(parts) or "no disks"


# ---- precheck / migrate -------------------------------------------------------------------
def find_vm(snap: Snapshot, name: str) -> VM:
    found = snap.vms_named(name)
    if not found:
        known = ", ".join(sorted({v.name for v in snap.vms})) or "none"
        raise UsageError(f"no VM named '{name}'; known VMs: {known}")
    if len(found) > 1:
        raise UsageError(f"more than one VM is named '{name}' "
                         f"({', '.join(v.server for v in found)}); give its UUID instead")
    return found[0]


def _disk_map(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        dev, eq, sr = value.partition("=")
        if not eq or not dev.strip() or not sr.strip():
            raise UsageError(f"--disk '{value}' is not DEV=SR (for example --disk vdb=\"Fast "
                             "storage\")")
        if dev in out:
            raise UsageError(f"--disk names {dev} twice; give each disk one SR")
        out[dev.strip()] = sr.strip()
    return out


_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def _nic_map(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        mac, eq, target = value.partition("=")
        mac, target = mac.strip().lower(), target.strip()
        name = target.removeprefix("bridge:")
        if not eq or not _MAC.fullmatch(mac) or not name:
            raise UsageError(f"--nic '{value}' is not MAC=NETWORK or MAC=bridge:NAME (for "
                             "example --nic 52:54:00:12:34:56=default)")
        if mac in out:
            raise UsageError(f"--nic names {mac} twice; give each NIC one network")
        out[mac] = target
    return out


AUTO = "auto"


def settings_from_args(args: argparse.Namespace,
                       defaults: MigrationSettings | None = None) -> MigrationSettings:
    """The migration settings: the inventory's defaults, changed by the options given."""
    base = defaults or MigrationSettings()
    changes: dict[str, Any] = {}
    if getattr(args, "policy", None):
        changes["policy"] = Policy(args.policy)
    if getattr(args, "max_downtime", None) is not None:
        changes["max_downtime_ms"] = args.max_downtime
    if getattr(args, "timeout", None) is not None:
        changes["timeout_s"] = args.timeout
    if getattr(args, "on_timeout", None):
        if getattr(args, "timeout", None) is None and base.timeout_s is None:
            raise UsageError("--on-timeout needs --timeout S (after how long)")
        changes["on_timeout"] = OnTimeout(args.on_timeout)
    if getattr(args, "compress", False):
        changes["compression"] = True
    if getattr(args, "parallel", None) is not None:
        changes["parallel"] = args.parallel
    settings = replace(base, **changes)
    problems = settings.problems()
    if problems:
        raise UsageError(" ".join(problems))
    return settings


def requests_from_args(snap: Snapshot, args: argparse.Namespace,
                       busy: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
                       defaults: MigrationSettings | None = None,
                       ) -> tuple[list[MigrationRequest], dict[str, list[Rating]]]:
    """The requests, and with `--to auto` each VM's ranking of the servers (by VM name)."""
    auto = args.to == AUTO and AUTO not in snap.servers
    if not auto and args.to not in snap.servers:
        raise UsageError(f"no server named '{args.to}'; servers: {', '.join(snap.servers)}, "
                         f"or '{AUTO}' for the best one")
    if args.network is not None and args.network not in snap.networks:
        raise UsageError(f"no network named '{args.network}'; networks: "
                         f"{', '.join(snap.networks) or 'none'}")
    if args.bandwidth is not None and args.bandwidth <= 0:
        raise UsageError("--bandwidth must be a positive number of MiB/s")
    disks = _disk_map(args.disk)
    settings = settings_from_args(args, defaults)
    vms = [find_vm(snap, name) for name in args.vms]
    if len(vms) > 1 and disks:
        raise UsageError("--disk applies to one VM; migrate VMs with per-disk SRs one at a time")
    nics = _nic_map(args.nic)
    if len(vms) > 1 and nics:
        raise UsageError("--nic applies to one VM; migrate VMs with NIC mappings one at a time")

    def request(vm: VM, to: str = args.to) -> MigrationRequest:
        return MigrationRequest(vm=vm.key, destination=to, sr=args.sr, disk_srs=disks,
                                nics=nics,
                                network=args.network, bandwidth_mib_s=args.bandwidth,
                                tls=args.tls, resume=getattr(args, "resume", False),
                                data_path=DataPath(args.via) if getattr(args, "via", None)
                                else None, settings=settings)

    if not auto:
        return [request(vm) for vm in vms], {}
    placed = place_together(snap, vms, busy, request)
    rankings = {vm.name: ratings for vm, ratings in placed}
    out = []
    for vm, ratings in placed:
        if not ratings or not ratings[0].eligible:
            why = "; ".join(dict.fromkeys(p.message for r in ratings for p in r.problems))
            raise UsageError(f"no server can take '{vm.name}': {why or 'there is no other'}")
        out.append(request(vm, ratings[0].server))
    return out, rankings


def plan_json(snap: Snapshot, plan: MigrationPlan) -> dict[str, Any]:
    secs = estimate_seconds(snap, plan)
    return {
        "vm": plan.vm.name, "from": plan.source, "to": plan.destination,
        "kind": plan.kind.value, "data_path": plan.data_path.value,
        "state": plan.vm.state.value, "resume": plan.resume,
        "network": plan.network, "address": plan.address,
        "home_server": plan.home_server, "bytes": plan.bytes_to_copy,
        "estimate_seconds": round(secs, 1) if secs is not None else None,
        "disks": [{"dev": d.dev, "from_sr": d.source_sr, "to_sr": d.target_sr, "copy": d.copy,
                   "capacity": d.capacity} for d in plan.disks],
        "policy": None if plan.offline else _settings_json(plan.settings),
        "nics": [{"mac": n.nic.mac, "model": n.nic.model, "from": n.nic.target or n.nic.kind,
                  "to": n.target or n.nic.kind, "mapped": n.mapped} for n in plan.nics],
    }


def _settings_json(s: MigrationSettings) -> dict[str, Any]:
    return {"policy": s.policy.value, "max_downtime_ms": s.max_downtime_ms,
            "timeout_s": s.timeout_s, "on_timeout": s.on_timeout.value,
            "compression": s.compression, "parallel": s.parallel}


def _print_plan(snap: Snapshot, plan: MigrationPlan, out: TextIO) -> None:
    over = (f"over '{plan.network}' {plan.address}" if plan.network and plan.address
            else "(no migration network)")
    if plan.data_path is DataPath.STREAM:
        how = "halted: disks through libvirt volume streams, verified, then its definition"
    elif plan.data_path is DataPath.DIRECT:
        end = "saved again there" if plan.vm.managed_save else "turned off there"
        how = f"halted: started paused, its disks sent directly {over}, {end}"
    elif plan.data_path is DataPath.DEFINITION:
        how = "halted: its definition only, the disks stay"
    else:
        paused = (", resumed there" if plan.resume else ", stays paused") \
            if plan.vm.state is VmState.PAUSED else ""
        how = f"{plan.kind.value} live migration {over}{paused}"
    out.write(f"{plan.vm.name}: {plan.source} → {plan.destination} ({how})\n")
    for d in plan.disks:
        if d.copy:
            left = "; the file in no SR stays" if d.loose else ""
            out.write(f"  {d.dev}: {d.source_sr or d.source_path or '(no file)'} → "
                      f"{d.target_sr or '(no SR)'} "
                      f"({format_bytes(d.capacity)} copied{left})\n")
        else:
            out.write(f"  {d.dev}: stays on {d.source_sr}\n")
    for n in plan.nics:
        if n.changed:
            out.write(f"  NIC {n.nic.mac}: {n.nic.described} → "
                      f"{describe_nic_target(n.target)}\n")
        else:
            out.write(f"  NIC {n.nic.mac}: {n.nic.described}\n")
    if not plan.offline:
        out.write(f"  settings: {plan.settings.describe()}\n")
        if plan.settings.post_copy_allowed:
            out.write(f"  warning: {POST_COPY_RISK}\n")


def _refused(problems: list[Problem], as_json: bool, nothing: str) -> int:
    """Say why a command is refused (exit 2): nothing was done."""
    if as_json:
        json.dump({"ok": False, "problems": [p.to_json() for p in problems]}, sys.stdout,
                  indent=2)
        sys.stdout.write("\n")
    else:
        _print_problems(problems, sys.stdout)
        sys.stdout.write(f"Refused: {nothing}.\n")
    return EXIT_BAD_INPUT


def _print_problems(problems: list[Problem], out: TextIO) -> None:
    for p in problems:
        tag = "error" if p.blocking else "warning"
        out.write(f"  {tag} [{p.code}] {p.message}\n")


def _print_placement(rankings: dict[str, list[Rating]], out: TextIO) -> None:
    for name, ratings in rankings.items():
        out.write(f"{name}: servers ranked for it (best first)\n")
        for r in ratings:
            if r.eligible:
                out.write(f"  {'*' * r.stars:<5} {r.server} ({r.score:.0f}/100): "
                          f"{'; '.join(r.reasons)}\n")
            else:
                out.write(f"  {'-':<5} {r.server}: "
                          f"{'; '.join(p.message for p in r.problems)}\n")


async def cmd_migrate(engine: Any, args: argparse.Namespace, execute: bool) -> int:
    snap: Snapshot = engine.snapshot()
    requests, rankings = requests_from_args(snap, args, engine.busy,
                                            engine.inventory.migration)
    await engine.ask_cpus(requests)
    plans = [engine.plan(r) for r in requests]
    problems = engine.check(plans)
    refused = blocking(problems)
    placement = {name: [r.to_json() for r in ratings] for name, ratings in rankings.items()}
    if not execute or refused:
        if args.json:
            json.dump({"ok": not refused, "plans": [plan_json(snap, p) for p in plans],
                       "problems": [p.to_json() for p in problems],
                       **({"placement": placement} if rankings else {})},
                      sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            _print_placement(rankings, sys.stdout)
            for plan in plans:
                _print_plan(snap, plan, sys.stdout)
            _print_problems(problems, sys.stdout)
            if refused:
                sys.stdout.write("Refused: nothing was moved.\n")
            else:
                sys.stdout.write("OK: the migration can go ahead.\n")
        return EXIT_BAD_INPUT if refused else EXIT_OK
    if not args.json:
        _print_placement(rankings, sys.stdout)
        for plan in plans:
            _print_plan(snap, plan, sys.stdout)
        _print_problems(problems, sys.stdout)
    jobs = engine.migrate(requests)
    return await _follow(engine, jobs, args.json,
                         {j.id: p.bytes_to_copy for j, p in zip(jobs, plans, strict=True)})


async def cmd_move_disk(engine: Any, args: argparse.Namespace) -> int:
    snap: Snapshot = engine.snapshot()
    vm = find_vm(snap, args.vm)
    if vm.disk(args.dev) is None:
        raise UsageError(f"'{vm.name}' has no disk '{args.dev}'; its disks: "
                         f"{', '.join(d.dev for d in vm.hard_disks) or 'none'}")
    if args.bandwidth is not None and args.bandwidth <= 0:
        raise UsageError("--bandwidth must be a positive number of MiB/s")
    plan = engine.plan_disk_move(vm.key, args.dev, args.sr)
    refused = blocking(engine.check_disk_move(plan))
    if refused:
        return _refused(refused, args.json, "nothing was moved")
    job = engine.move_disk(vm.key, args.dev, args.sr, args.bandwidth)
    return await _follow(engine, [job], args.json, {})


async def cmd_copy(engine: Any, args: argparse.Namespace) -> int:
    snap: Snapshot = engine.snapshot()
    vm = find_vm(snap, args.vm)
    to = args.to or vm.server
    if to not in snap.servers:
        raise UsageError(f"no server named '{to}'; servers: {', '.join(snap.servers)}")
    request = CopyRequest(vm.key, to, args.name, sr=args.sr, disk_srs=_disk_map(args.disk))
    plan = engine.plan_copy(request)
    problems = engine.check_copy(plan)
    refused = blocking(problems)
    if refused:
        return _refused(refused, args.json, "nothing was copied")
    if not args.json:
        sys.stdout.write(f"{vm.name} → {plan.name} on {to} (a new halted VM; its disks "
                         "copied through libvirt volume streams and verified)\n")
        for d in plan.disks:
            sys.stdout.write(f"  {d.dev}: {d.source_sr} → {d.target_sr} "
                             f"({format_bytes(d.allocation or d.capacity)} of data)\n")
        _print_problems(problems, sys.stdout)
    job = engine.copy(request)
    return await _follow(engine, [job], args.json, {})


def _status_line(job: Job) -> str:
    parts = [f"{job.vm_name}: {job.status}"]
    if job.bytes_total:
        parts.append(f"{job.percent:5.1f}% {format_bytes(job.bytes_done)}/"
                     f"{format_bytes(job.bytes_total)}")
    if job.rate:
        parts.append(f"{format_bytes(job.rate)}/s")
    if job.eta is not None:
        parts.append(f"ETA {format_duration(job.eta)}")
    return " ".join(parts)


async def _follow(engine: Any, jobs: list[Job], as_json: bool,
                  planned_bytes: dict[int, int]) -> int:
    results = await _run_jobs(engine, jobs, as_json, planned_bytes)
    if as_json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILED


async def _run_jobs(engine: Any, jobs: list[Job], as_json: bool,
                    planned_bytes: dict[int, int]) -> list[dict[str, Any]]:
    """Follow `jobs` to their end (Ctrl-C cancels them); their results, printed as text
    unless `as_json`."""
    loop = asyncio.get_running_loop()
    interrupted = False
    cancels: set[asyncio.Future[None]] = set()

    def on_sigint() -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            sys.stderr.write("\nCancelling…\n")
        for job in jobs:
            cancel = asyncio.ensure_future(engine.cancel(job))
            cancel.add_done_callback(partial(_say_refusal, job))
            cancels.add(cancel)

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    tty = sys.stdout.isatty() and not as_json
    last_states: dict[int, JobState] = {}
    noted: dict[int, int] = {}
    try:
        waiter = asyncio.ensure_future(engine.wait(jobs))
        while not waiter.done():
            await asyncio.wait([waiter], timeout=0.5)
            if as_json:
                continue
            if tty:
                line = " | ".join(_status_line(j) for j in jobs)
                sys.stdout.write("\r\033[K" + line[:200])
                sys.stdout.flush()
            else:
                for j in jobs:
                    if last_states.get(j.id) is not j.state:
                        last_states[j.id] = j.state
                        sys.stdout.write(_status_line(j) + "\n")
                    for note in j.policy_log[noted.get(j.id, 0):]:
                        sys.stdout.write(f"{j.vm_name}: {note}\n")
                    noted[j.id] = len(j.policy_log)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    if tty:
        sys.stdout.write("\n")
    results = []
    for j in jobs:
        ok = j.state is JobState.DONE
        results.append({
            "vm": j.vm_name, "from": j.source, "to": j.destination, "ok": ok,
            "state": j.state.value, "error": j.error, "details": j.error_details,
            "seconds": round(j.elapsed, 2), "downtime_ms": j.downtime_ms,
            "bytes": j.bytes_done or planned_bytes.get(j.id, 0),
            **({"policy": j.policy, "actions": j.policy_log} if j.policy else {}),
        })
        if not as_json:
            msg = j.messages[-1] if ok and j.messages else (j.error or j.state.value)
            sys.stdout.write(f"{j.vm_name}: {j.state.value} in "
                             f"{format_duration(j.elapsed)} — {msg}\n")
    return results


def _say_refusal(job: Job, cancel: asyncio.Future[str | None]) -> None:
    if not cancel.cancelled() and cancel.exception() is None and cancel.result():
        sys.stderr.write(f"{job.vm_name}: not cancelled: {cancel.result()}\n")


# ---- power operations ---------------------------------------------------------------------
POWER_COMMANDS = {"start": PowerAction.START, "shutdown": PowerAction.SHUTDOWN,
                  "reboot": PowerAction.REBOOT, "suspend": PowerAction.SUSPEND,
                  "resume": PowerAction.RESUME}


async def cmd_power(engine: Any, args: argparse.Namespace) -> int:
    snap: Snapshot = engine.snapshot()
    action = POWER_COMMANDS[args.command]
    if action is PowerAction.SHUTDOWN and args.force:
        action = PowerAction.FORCE_SHUTDOWN
    timeout = getattr(args, "timeout", 120.0)
    if timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    vms = [find_vm(snap, name) for name in args.vms]
    if len({v.key for v in vms}) != len(vms):
        raise UsageError("a VM is named twice; name each VM once")
    on = getattr(args, "on", None)
    if on is not None:
        if on not in snap.servers:
            raise UsageError(f"no server named '{on}'; servers: {', '.join(snap.servers)}")
        if len(vms) != 1:
            raise UsageError("--on starts one VM; start VMs on a server one at a time")
        problems = check_start_on(snap, vms[0], on, engine.busy)
        if problems:
            return _refused(problems, args.json, "nothing was done")
        return await _follow(engine, await engine.start_on(vms[0].key, on), args.json, {})
    problems = [p for v in vms for p in check_power(snap, v, action, engine.busy)]
    if problems:
        return _refused(problems, args.json, "nothing was done")
    jobs = [engine.power(v.key, action, timeout=timeout) for v in vms]
    return await _follow(engine, jobs, args.json, {})


# ---- maintenance mode ---------------------------------------------------------------------
def _choices(snap: Snapshot, server: str, send: list[str], leave: list[str]
             ) -> dict[str, str | None]:
    on = {v.name: v for v in snap.vms_on(server)} | {v.uuid: v for v in snap.vms_on(server)}
    names = ", ".join(sorted(v.name for v in snap.vms_on(server))) or "none"
    out: dict[str, str | None] = {}
    for value in send:
        vm_name, eq, to = value.partition("=")
        vm_name, to = vm_name.strip(), to.strip()
        if not eq or not vm_name or not to:
            raise UsageError(f"--send '{value}' is not VM=SERVER (for example --send "
                             "web-1=lab-b1)")
        if vm_name not in on:
            raise UsageError(f"--send: '{server}' runs no VM named '{vm_name}'; its VMs: "
                             f"{names}")
        if to not in snap.servers:
            raise UsageError(f"--send: no server named '{to}'; servers: "
                             f"{', '.join(snap.servers)}")
        out[on[vm_name].uuid] = to
    for vm_name in leave:
        if vm_name not in on:
            raise UsageError(f"--leave: '{server}' runs no VM named '{vm_name}'; its VMs: "
                             f"{names}")
        if on[vm_name].uuid in out:
            raise UsageError(f"'{vm_name}' is given both --send and --leave; choose one")
        out[on[vm_name].uuid] = None
    return out


def _print_evacuation(server: str, rows: list[Evacuation], out: TextIO) -> None:
    out.write(f"Maintenance mode for '{server}': {len(rows)} VM(s)\n")
    for r in rows:
        if r.destination is not None:
            why = "; ".join(r.rating.reasons) if r.rating else ""
            pick = "chosen" if r.chosen else "best"
            out.write(f"  {r.vm.name}: → {r.destination} ({pick}: {why})\n")
        else:
            out.write(f"  {r.vm.name}: stays — {r.reason}\n")


def _blocked(rows: list[Evacuation]) -> list[Evacuation]:
    """Running VMs that would be left running on the server without the operator asking."""
    return [r for r in rows if r.destination is None and r.problems]


async def cmd_maintenance(engine: Any, args: argparse.Namespace) -> int:
    snap: Snapshot = engine.snapshot()
    server = args.server
    if server not in snap.servers:
        raise UsageError(f"no server named '{server}'; servers: {', '.join(snap.servers)}")
    if args.parallel <= 0:
        raise UsageError("--parallel must be a positive number of VMs")
    if not snap.servers[server].connected:
        raise UsageError(f"'{server}' is not connected ({snap.servers[server].error}); "
                         "maintenance mode needs to reach it")
    if args.action == "exit":
        return await _maintenance_exit(engine, args)
    choices = _choices(snap, server, args.send, args.leave)
    rows, problems = await engine.plan_maintenance(server, choices)
    blocked = _blocked(rows)
    refused = blocking(problems)
    snap = engine.snapshot()
    document: dict[str, Any] = {
        "server": server, "plan": [r.to_json() for r in rows],
        "problems": [p.to_json() for p in problems]}
    if blocked or refused or args.dry_run:
        ok = not blocked and not refused
        if args.json:
            json.dump({"ok": ok, "maintenance": snap.servers[server].maintenance, **document},
                      sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            _print_evacuation(server, rows, sys.stdout)
            _print_problems(problems, sys.stdout)
            for r in blocked:
                sys.stdout.write(f"  error: '{r.vm.name}' cannot leave '{server}'; fix what "
                                 f"stops it, or leave it running there with --leave "
                                 f"{r.vm.name}\n")
            if not ok:
                sys.stdout.write("Refused: nothing was moved and the server is not in "
                                 "maintenance mode.\n")
            else:
                sys.stdout.write("OK: the server can enter maintenance mode.\n")
        return EXIT_OK if ok else EXIT_BAD_INPUT
    if not args.json:
        _print_evacuation(server, rows, sys.stdout)
        _print_problems(problems, sys.stdout)
    jobs = engine.enter_maintenance(server, rows, parallel=args.parallel)
    if not args.json:
        sys.stdout.write(f"'{server}' is in maintenance mode; moving {len(jobs)} VM(s), "
                         f"{args.parallel} at a time\n")
    results = await _run_jobs(engine, jobs, args.json, {})
    ok = all(r["ok"] for r in results)
    left = [v.name for v in engine.snapshot().vms_on(server) if v.is_running]
    if args.json:
        json.dump({"ok": ok, "maintenance": True, **document, "results": results,
                   "still_running_there": left}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        done = sum(1 for r in results if r["ok"])
        sys.stdout.write(f"Summary: {done} of {len(results)} VM(s) moved off '{server}'; "
                         f"it stays in maintenance mode"
                         + (f"; still running there: {', '.join(left)}" if left else "")
                         + (f". Run 'xencenter-lite maintenance enter {server}' again to "
                            "move what is left" if not ok else "") + ".\n")
    return EXIT_OK if ok else EXIT_FAILED


async def _maintenance_exit(engine: Any, args: argparse.Namespace) -> int:
    server = args.server
    was = engine.in_maintenance(server)
    jobs = await engine.exit_maintenance(server, bring_back=not args.no_return,
                                         parallel=args.parallel)
    if not args.json:
        state = "was not in maintenance mode" if not was else "is out of maintenance mode"
        what = (f"bringing back {len(jobs)} VM(s)" if not args.no_return
                else "its VMs stay where they are")
        sys.stdout.write(f"'{server}' {state}; {what}\n")
    results = await _run_jobs(engine, jobs, args.json, {})
    ok = all(r["ok"] for r in results)
    if args.json:
        json.dump({"ok": ok, "server": server, "maintenance": False,
                   "was_in_maintenance": was, "results": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif jobs:
        done = sum(1 for r in results if r["ok"])
        sys.stdout.write(f"Summary: {done} of {len(results)} VM(s) back on '{server}'.\n")
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
