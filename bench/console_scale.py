"""The console at scale: 100 servers × 50 VMs on libvirt's test driver, in one process.

Run from the repository (no lab, no root needed):

    .venv/bin/python bench/console_scale.py --rounds 5

Generates, under a temporary directory, one libvirt test-driver node file per server (host
memory, a local SR, a shared SR for pool members, the volumes the VMs' disks point at, VMs
running / halted / paused, some in folders) and the inventory TOML (pools of members, a
management and a storage network). Then, each round in a fresh process (so nothing is
warm but the page cache):

- populated: from `engine.start()` to the moment the Resources tree (the proxy the view
  shows) holds every VM row, and — what the goal is about — from the moment the last
  server's reading came back from libvirt ("the connections answer") to that moment. The
  benchmark observes from outside the product: it wraps ServerLink.read to note when each
  server's first reading returns, and a 5 ms timer on the Qt loop counts the VM rows in
  the view's proxy model.
- filter: for several queries, the time from setting the search box's text to the proxy
  holding exactly the matching VM rows (events processed, so the view's deferred layout
  is included), each query repeated.
- rss: resident memory of the process with everything loaded (VmRSS) and its peak (VmHWM).

And compares one server's connect + load with `virsh -c URI list --all` followed by
`virsh -c URI pool-list` on the same test-driver server: `xencenter-lite list --json` on a
one-server inventory (a process, like virsh) and ServerLink.open()+read() in process,
alternating which goes first, repeated.

Goals: populated ≤ 1.0 s after the connections answer, filter ≤ 50 ms, RSS ≤ 350 MB.
`--src DIR` runs another checkout of the package (e.g. the code before a change), by
putting DIR first on PYTHONPATH of the measured processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("web", "db", "app", "cache", "build")
FOLDERS = ("/Web", "/Databases/Production", "/Databases/Test", "/Apps", "")
GIB = 1024**3
QUERIES = ("web-042-1", "db-007", "app", "srv-013", "nothing-matches", "")


# ---- the fleet ------------------------------------------------------------------------------
def _u(*parts: object) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "xcl-bench/" + "/".join(map(str, parts))))


def vm_name(server: int, i: int) -> str:
    return f"{ROLES[i % len(ROLES)]}-{server:03d}-{i:02d}"


def generate(folder: Path, servers: int = 100, vms: int = 50, pool_size: int = 8,
             pools: int = 10) -> tuple[Path, list[tuple[str, str, str]]]:
    """Write the node files and the inventory; return (inventory, [(server, uuid, name)])."""
    folder.mkdir(parents=True, exist_ok=True)
    members: dict[int, int] = {}  # server -> pool number
    for p in range(pools):
        for k in range(pool_size):
            s = p * pool_size + k
            if s < servers:
                members[s] = p
    expected: list[tuple[str, str, str]] = []
    inv = ['management_network = "management"', "", "[networks.management]",
           "rate_mib_s = 100", "", "[networks.storage]", "rate_mib_s = 1000", ""]
    for s in range(servers):
        name = f"srv-{s:03d}"
        local = f"/srv/hosts/{name}/local"
        pool = members.get(s)
        shared = f"/srv/pools/pool-{pool:02d}/shared" if pool is not None else None
        local_vols, shared_vols, domains = [], [], []
        for i in range(vms):
            vname, vuuid = vm_name(s, i), _u(s, i)
            expected.append((name, vuuid, vname))
            disks = []
            for d, dev in enumerate(("vda", "vdb")[: 1 + (i % 3 == 0)]):
                on_shared = shared is not None and d == 0 and i % 2 == 0
                base = shared if on_shared else local
                assert base is not None
                vol = f"{vname}-{dev}.qcow2"
                path = f"{base}/{vol}"
                cap = (20 + 10 * d) * GIB
                (shared_vols if on_shared else local_vols).append(
                    f"<volume type='file'><name>{vol}</name><key>{path}</key>"
                    f"<capacity unit='bytes'>{cap}</capacity>"
                    f"<allocation unit='bytes'>{GIB // 2}</allocation>"
                    f"<target><path>{path}</path><format type='qcow2'/></target></volume>")
                disks.append(f"<disk type='file' device='disk'><driver name='qemu' "
                             f"type='qcow2'/><source file='{path}'/>"
                             f"<target dev='{dev}' bus='virtio'/></disk>")
            if i % 10 == 5:
                disks.append("<disk type='file' device='cdrom'><driver name='qemu' "
                             "type='raw'/><target dev='sda' bus='sata'/><readonly/></disk>")
            folder_path = FOLDERS[(s + i) % len(FOLDERS)]
            meta = (f"<metadata><xcl:vm xmlns:xcl='urn:xencenter-lite:vm:1'>"
                    f"<home-server>{name}</home-server><folder>{folder_path}</folder>"
                    f"</xcl:vm></metadata>") if folder_path else ""
            # runstate: 1 running (default), 3 paused, 5 shut off
            runstate = "<test:runstate>5</test:runstate>" if i % 4 == 3 else (
                "<test:runstate>3</test:runstate>" if i % 25 == 7 else "")
            mem = (1 + i % 4) * 1024 * 1024
            domains.append(
                f"<domain type='test'><name>{vname}</name><uuid>{vuuid}</uuid>"
                f"<memory unit='KiB'>{mem}</memory><currentMemory unit='KiB'>{mem}"
                f"</currentMemory><vcpu>{1 + i % 4}</vcpu><os><type>hvm</type></os>{meta}"
                f"<devices>{''.join(disks)}<interface type='network'><source network='default'/>"
                f"</interface></devices>{runstate}</domain>")
        # The test driver gives every pool 100 GiB and counts the volumes' allocation (keep
        # their sum below that, or libvirt reports a negative "available" as 2**64 - n).
        pools_xml = [
            f"<pool type='dir'><name>Local storage</name><uuid>{_u(s, 'local')}</uuid>"
            f"<target><path>{local}</path></target>{''.join(local_vols)}</pool>"]
        if shared is not None:
            pools_xml.append(
                f"<pool type='dir'><name>Shared storage</name><uuid>{_u(s, 'shared')}</uuid>"
                f"<target><path>{shared}</path></target>{''.join(shared_vols)}</pool>")
        node = (
            "<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
            "<cpu><mhz>2600</mhz><model>x86_64</model><active>32</active><nodes>1</nodes>"
            "<sockets>2</sockets><cores>16</cores><threads>1</threads></cpu>"
            f"<memory>{512 * 1024 * 1024}</memory>"  # KiB: 512 GiB
            f"{''.join(domains)}{''.join(pools_xml)}</node>\n")
        path = folder / f"{name}.xml"
        path.write_text(node)
        inv += ["[[servers]]", f'name = "{name}"', f'uri = "test://{path}"',
                'default_sr = "Local storage"' if pool is None else "",
                "[servers.networks]", f'management = "10.1.{s // 250}.{s % 250 + 1}"',
                f'storage = "10.2.{s // 250}.{s % 250 + 1}"', ""]
    for p in range(pools):
        names = [f'"srv-{s:03d}"' for s, q in sorted(members.items()) if q == p]
        if names:
            inv += ["[[pools]]", f'name = "Pool {p:02d}"', f"members = [{', '.join(names)}]",
                    'default_sr = "Shared storage"', ""]
    inventory = folder / "inventory.toml"
    inventory.write_text("\n".join(inv))
    (folder / "expected.json").write_text(json.dumps(expected))
    return inventory, expected


# ---- one round, in its own process -----------------------------------------------------------
def rss_kib() -> tuple[int, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def measure_round(inventory: Path, filter_repeats: int, answer_delay: float = 0.0,
                  menu_servers: int = 0) -> dict[str, object]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["QT_API"] = "pyside6"
    import asyncio
    import threading

    import qasync
    from PySide6.QtCore import QModelIndex, QTimer
    from PySide6.QtWidgets import QApplication

    from xencenter_lite.core.inventory import load_inventory
    from xencenter_lite.engine import Engine
    from xencenter_lite.ui.common import KindRole
    from xencenter_lite.ui.main_window import MainWindow
    from xencenter_lite.virt.connection import LibvirtLink as ServerLink

    expected = json.loads((inventory.parent / "expected.json").read_text())
    total_vms = len(expected)

    answered: dict[str, float] = {}
    lock = threading.Lock()
    original_read = ServerLink.read

    def timed_read(self: ServerLink, *args: object, **kwargs: object) -> object:
        reading = original_read(self, *args, **kwargs)  # type: ignore[arg-type]
        now = time.perf_counter()
        with lock:
            answered.setdefault(self.name, now)
        return reading

    ServerLink.read = timed_read  # type: ignore[method-assign]
    if answer_delay:
        # A remote server: its connection answers only after network round trips. The
        # wait is spent where a network wait would be (in the worker thread, GIL free), and
        # each server waits a different time, up to answer_delay (the slowest).
        original_open = ServerLink.open
        delays = {s: answer_delay * (0.5 + 0.5 * ((i * 7919) % 1000) / 999)
                  for i, (s, _u, _n) in enumerate(sorted(set((s, "", "") for s, _u, _n in
                                                              json.loads((inventory.parent
                                                                          / "expected.json")
                                                                         .read_text()))))}

        def slow_open(self: ServerLink) -> object:
            time.sleep(delays.get(self.name, answer_delay))
            return original_open(self)

        ServerLink.open = slow_open  # type: ignore[method-assign]

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)  # as the console does: the engine stops first
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    engine = Engine(load_inventory(inventory))
    window = MainWindow(engine)
    window.show()
    pane = window.resources
    proxy = pane.proxy

    def vm_rows(parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        n = 0
        for r in range(proxy.rowCount(parent)):
            index = proxy.index(r, 0, parent)
            if index.data(KindRole) == "vm":
                n += 1
            else:
                n += vm_rows(index)
        return n

    def rows_under_servers() -> int:
        """Rows (VMs and local SRs) under every server: ~200 calls, cheap enough to ask
        every 5 ms (vm_rows() walks all 5000 rows and would slow down what it measures)."""
        n = 0
        stack = [QModelIndex()]
        while stack:
            parent = stack.pop()
            for r in range(proxy.rowCount(parent)):
                index = proxy.index(r, 0, parent)
                kind = index.data(KindRole)
                if kind == "server":
                    n += proxy.rowCount(index)
                elif kind in ("root", "pool"):  # (the root node holds pools and servers)
                    stack.append(index)
        return n

    expected_rows = total_vms + len({s for s, _u, _n in expected})  # + one local SR each
    result: dict[str, object] = {}
    populated: asyncio.Event | None = None  # made on the loop, in main()
    t_start = 0.0
    t_populated: float | None = None
    t_first: float | None = None
    changed = True

    def note_change(*_args: object) -> None:
        nonlocal changed
        changed = True

    proxy.rowsInserted.connect(note_change)
    proxy.layoutChanged.connect(note_change)
    proxy.modelReset.connect(note_change)

    def check() -> None:
        nonlocal t_populated, t_first, changed
        if t_populated is not None or not changed:
            return
        changed = False
        under = rows_under_servers()
        if t_first is None and under > 0:
            t_first = time.perf_counter()  # the first server answered and shows its VMs
        if under >= expected_rows and vm_rows() == total_vms:
            t_populated = time.perf_counter()
            assert populated is not None
            populated.set()

    async def main() -> None:
        nonlocal populated, t_start
        populated = asyncio.Event()
        timer = QTimer()
        timer.setInterval(5)
        timer.timeout.connect(check)
        timer.start()
        await asyncio.sleep(0.2)  # let the window settle
        t_start = time.perf_counter()
        starting = asyncio.ensure_future(engine.start())
        await asyncio.wait_for(populated.wait(), 300)
        timer.stop()
        await starting
        assert t_populated is not None
        last_answer = max(answered.values())
        result["servers_answered"] = len(answered)
        result["start_to_last_answer_s"] = round(last_answer - t_start, 4)
        result["start_to_populated_s"] = round(t_populated - t_start, 4)
        result["answer_to_populated_s"] = round(t_populated - last_answer, 4)
        assert t_first is not None
        result["start_to_first_server_s"] = round(t_first - t_start, 4)
        result["start_to_first_answer_s"] = round(min(answered.values()) - t_start, 4)
        if menu_servers:
            result["menu_checks_s"] = await menu_checks(engine, window, menu_servers)
        # Whether all selections/highlights are right is the tests' job; here: exact counts.
        await asyncio.sleep(0.5)
        counts = {}
        for q in QUERIES:
            ql = q.lower()
            counts[q] = sum(1 for _s, _u, name in expected if ql in name.lower())
        filt: dict[str, list[float]] = {q: [] for q in QUERIES}
        sync_part: dict[str, list[float]] = {q: [] for q in QUERIES}

        def one_query(q: str) -> None:
            """Outside any task (processEvents inside a task step would re-enter qasync)."""
            t0 = time.perf_counter()
            pane.search.setText(q)
            t_set = time.perf_counter()
            app.processEvents()  # the view's deferred layout and paint, queued loop work
            t1 = time.perf_counter()
            waited = 0.0
            while vm_rows() != counts[q]:  # a debounced filter: wait for it (untimed check)
                w0 = time.perf_counter()
                time.sleep(0.001)
                app.processEvents()
                waited += time.perf_counter() - w0
                if waited > 10:
                    raise AssertionError(f"filter {q!r}: {vm_rows()} rows, expected "
                                         f"{counts[q]}")
            filt[q].append(round((t1 - t0 + waited) * 1000, 2))
            sync_part[q].append(round((t_set - t0) * 1000, 2))

        async def in_plain_callback(fn: Any, *args: Any) -> None:
            done = asyncio.get_running_loop().create_future()

            def call() -> None:
                try:
                    fn(*args)
                    done.set_result(None)
                except Exception as exc:
                    done.set_exception(exc)

            QTimer.singleShot(0, call)
            await done

        for _ in range(filter_repeats):
            for q in QUERIES:
                # from a different text each time, as a user types or clears
                await in_plain_callback(pane.search.setText, "zz-reset" if q == "" else "")
                await asyncio.sleep(0.05)
                await in_plain_callback(one_query, q)
        await in_plain_callback(pane.search.setText, "")
        result["filter_set_text_only_ms"] = sync_part
        result["filter_ms"] = filt
        result["filter_matches"] = counts
        await asyncio.sleep(1.0)
        rss, hwm = rss_kib()
        result["rss_mib"] = round(rss / 1024, 1)
        result["peak_rss_mib"] = round(hwm / 1024, 1)
        window._really_close = True  # nothing runs; close without asking
        window.close()
        await engine.close()

    with loop:
        loop.run_until_complete(main())
    return result


async def menu_checks(engine: Any, window: Any, servers: int) -> dict[str, list[float]]:
    """The Migrate to Server menu of one running VM, built as the console builds it: the
    time until every one of its `servers` entries has its verdict (the checks run in the
    background; the menu reads "(Updating…)" meanwhile). Then the wizard's Destination
    page for the same VM: until every destination has its verdict. Three times each."""
    import asyncio

    from xencenter_lite.core.model import VmState
    from xencenter_lite.ui.migrate_menu import MigrateToServerMenu
    from xencenter_lite.ui.wizard import MigrateWizard

    snap = engine.snapshot()
    vm = next(v for v in snap.vms if v.state is VmState.RUNNING)
    times: list[float] = []
    for _ in range(3):
        menu = MigrateToServerMenu(engine, lambda: [vm.key], window)
        t0 = time.perf_counter()
        menu.refresh()
        while menu.pending:
            await asyncio.sleep(0.002)
        times.append(round(time.perf_counter() - t0, 4))
        assert len(menu.entries()) >= servers, menu.entries()[:3]
        menu.deleteLater()
    wizard_times: list[float] = []
    for _ in range(3):
        t0 = time.perf_counter()
        wizard = MigrateWizard(engine, [vm.key], parent=window)
        while not all(wizard.checked(s) for s in snap.servers):
            await asyncio.sleep(0.002)
        wizard_times.append(round(time.perf_counter() - t0, 4))
        wizard.deleteLater()
    return {"menu": times, "wizard_destinations": wizard_times}


# ---- one server: us vs virsh ---------------------------------------------------------------
def one_server_inventory(folder: Path, node: Path) -> Path:
    inv = folder / "one.toml"
    inv.write_text(f'[[servers]]\nname = "srv-000"\nuri = "test://{node}"\n'
                   'default_sr = "Local storage"\n')
    return inv


def time_cmd(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def in_process_read(uri: str, env: dict[str, str]) -> float:
    """ServerLink.open() + read(), timed inside a fresh process (imports excluded)."""
    code = ("import time,sys\nfrom xencenter_lite.virt.connection import LibvirtLink\n"
            "t=time.perf_counter();l=LibvirtLink('s',sys.argv[1]);l.open();r=l.read()\n"
            "print(time.perf_counter()-t, len(r.vms))")
    out = subprocess.run([sys.executable, "-c", code, uri], check=True, capture_output=True,
                         text=True, env=env).stdout.split()
    assert int(out[1]) > 0
    return float(out[0])


def compare_virsh(folder: Path, rounds: int, env: dict[str, str]) -> dict[str, object]:
    node = folder / "srv-000.xml"
    uri = f"test://{node}"
    inv = one_server_inventory(folder, node)
    exe = str(Path(sys.executable).parent / "xencenter-lite")
    ours_cli: list[float] = []
    ours_inproc: list[float] = []
    virsh: list[float] = []
    for i in range(rounds):
        order = ("ours", "virsh") if i % 2 == 0 else ("virsh", "ours")
        for tool in order:
            if tool == "ours":
                ours_cli.append(time_cmd([exe, "--inventory", str(inv), "list", "--json"],
                                         env))
                ours_inproc.append(in_process_read(uri, env))
            else:
                virsh.append(time_cmd(["virsh", "-c", uri, "list", "--all"], env)
                             + time_cmd(["virsh", "-c", uri, "pool-list"], env))
    return {"xencenter_lite_list_json_s": summary(ours_cli),
            "serverlink_open_read_in_process_s": summary(ours_inproc),
            "virsh_list_all_plus_pool_list_s": summary(virsh),
            "ratio_cli_to_virsh": round(statistics.median(ours_cli)
                                        / statistics.median(virsh), 3),
            "ratio_in_process_to_virsh": round(statistics.median(ours_inproc)
                                               / statistics.median(virsh), 3)}


# ---- driver -----------------------------------------------------------------------------------
def summary(xs: list[float], digits: int = 4) -> dict[str, float]:
    return {"median": round(statistics.median(xs), digits), "min": round(min(xs), digits),
            "max": round(max(xs), digits), "n": len(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="fresh processes measured")
    ap.add_argument("--filter-repeats", type=int, default=5)
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--vms", type=int, default=50)
    ap.add_argument("--virsh-rounds", type=int, default=10)
    ap.add_argument("--src", action="append", default=[],
                    help="checkout(s) of the package to measure, alternating (default: this "
                         "repository); label=DIR names one")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench-console-scale.json"))
    ap.add_argument("--answer-delay", type=float, default=0.0, metavar="S",
                    help="each server's connection answers only after a wait of S/2..S "
                         "seconds (network round trips of a remote server)")
    ap.add_argument("--menu", action="store_true",
                    help="also time the Migrate to Server menu's and the wizard's checks")
    ap.add_argument("--round", metavar="INVENTORY", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.round:  # a child process: one round
        print(json.dumps(measure_round(Path(args.round), args.filter_repeats,
                                       args.answer_delay,
                                       args.servers if args.menu else 0)))
        return 0

    srcs = [s.split("=", 1) if "=" in s else [Path(s).name, s] for s in args.src] or [
        ["current", str(ROOT)]]
    with tempfile.TemporaryDirectory(prefix="xcl-scale-") as tmp:
        inventory, expected = generate(Path(tmp), args.servers, args.vms)
        print(f"generated {args.servers} servers, {len(expected)} VMs in {tmp}",
              file=sys.stderr)
        per_src: dict[str, list[dict[str, object]]] = {label: [] for label, _ in srcs}
        for i in range(args.rounds):
            order = srcs if i % 2 == 0 else list(reversed(srcs))
            for label, src in order:
                env = dict(os.environ, PYTHONPATH=src, QT_QPA_PLATFORM="offscreen")
                out = subprocess.run([sys.executable, __file__, "--round", str(inventory),
                                      "--filter-repeats", str(args.filter_repeats),
                                      "--answer-delay", str(args.answer_delay),
                                      "--servers", str(args.servers),
                                      *(["--menu"] if args.menu else [])],
                                     env=env, capture_output=True, text=True, timeout=900)
                if out.returncode != 0:
                    print(out.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"round failed for {label}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                per_src[label].append(r)
                worst_filter = max(max(v) for v in r["filter_ms"].values())
                print(f"round {i + 1} [{label}]: first server shown "
                      f"{r['start_to_first_server_s']:.3f} s, answer→populated "
                      f"{r['answer_to_populated_s']:.3f} s (start→populated "
                      f"{r['start_to_populated_s']:.3f} s), worst filter "
                      f"{worst_filter:.1f} ms, RSS {r['rss_mib']} MiB", file=sys.stderr)
        results: dict[str, object] = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "fleet": {"servers": args.servers, "vms_per_server": args.vms,
                      "vms": len(expected)},
            "answer_delay_s": args.answer_delay,
            "rounds": args.rounds,
        }
        for label, rounds in per_src.items():
            filt: dict[str, list[float]] = {}
            for r in rounds:
                for q, xs in r["filter_ms"].items():  # type: ignore[attr-defined]
                    filt.setdefault(q, []).extend(xs)
            all_filter = [x for xs in filt.values() for x in xs]
            set_text_only = [x for r in rounds
                             for xs in r["filter_set_text_only_ms"].values()  # type: ignore[attr-defined]
                             for x in xs]
            results[label] = {
                "answer_to_populated_s": summary([r["answer_to_populated_s"] for r in rounds]),
                "start_to_populated_s": summary([r["start_to_populated_s"] for r in rounds]),
                "start_to_last_answer_s": summary([r["start_to_last_answer_s"]
                                                   for r in rounds]),
                "start_to_first_answer_s": summary([r["start_to_first_answer_s"]
                                                    for r in rounds]),
                "start_to_first_server_s": summary([r["start_to_first_server_s"]
                                                    for r in rounds]),
                **({"menu_checks_s": summary([x for r in rounds
                                              for x in r["menu_checks_s"]["menu"]]),
                    "wizard_destination_checks_s": summary(
                        [x for r in rounds for x in r["menu_checks_s"]["wizard_destinations"]])}
                   if args.menu else {}),
                "filter_ms_by_query": {q: summary(xs, 2) for q, xs in filt.items()},
                "filter_ms_all": summary(all_filter, 2),
                "filter_set_text_only_ms_all": summary(set_text_only, 2),
                "rss_mib": summary([r["rss_mib"] for r in rounds], 1),
                "peak_rss_mib": summary([r["peak_rss_mib"] for r in rounds], 1),
            }
        label0, src0 = srcs[-1]
        env = dict(os.environ, PYTHONPATH=src0)
        results["one_server_vs_virsh"] = {"src": label0,
                                          **compare_virsh(Path(tmp), args.virsh_rounds, env)}
    text = json.dumps(results, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
