"""Responsiveness: stalls of the console's Qt loop while four jobs run on the real lab.

Run as root from the repository (it brings up a lab of its own and takes it down at the end):

    XCL_TEST_LAB_SLOT=5 .venv/bin/python bench/responsiveness.py --rounds 4

The lab is the tests' lab at slot XCL_TEST_LAB_SLOT (default 5), so it runs beside a demo
lab. Each round, in a fresh process: the main window is shown (offscreen; the Events view
and the Resources tree update as usual, a migrating VM is selected so its Properties
follow the job too), the engine connects, then four jobs start at once and report progress:
the three running VMs migrate (web-1 memory-only inside the pool, db-1 and app-1 with their
disks to the other side) and build-1, started for the purpose, has its disk moved live to
another SR, each capped in bandwidth so it lasts about ten seconds. The next round moves
everything back. A heartbeat QTimer (10 ms, precise) on the Qt loop records every gap; a
stall is gap - 10 ms. The same is recorded for 3 s of idle before the jobs, to tell the
console's stalls from the machine's.

Goal: no stall over 50 ms. Reported: 50th/99th percentile and max stall during the jobs,
and for each stall the CPU time the loop's thread (and the whole process) used in it, so the
console's own work can be told from waiting for a CPU on a busy machine.
`--src label=DIR` (repeatable) measures other checkouts of the package, alternating.
`--diagnose` samples the main thread's stack during stalls and reports the commonest ones.
The lab runs its servers (their tini, libvirtd and QEMU processes) in a CPU group of their
own that gets only the CPU time nothing else wants: they stand for other machines, and here
share 2 CPUs with the console, as an operator's desktop and a fleet would not.
`--compare-shared-cpu` alternates rounds in that group with rounds where the servers are
moved back to the machine's root group, as before the lab had the group (each QEMU then in
an autogroup session of its own, weighing as much as the console).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INTERVAL_MS = 10
MIB = 1024 * 1024


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def stall_summary(stalls: list[float]) -> dict[str, float]:
    return {"beats": len(stalls), "p50_ms": round(percentile(stalls, 50), 2),
            "p99_ms": round(percentile(stalls, 99), 2),
            "max_ms": round(max(stalls, default=0.0), 2),
            "over_50ms": sum(1 for s in stalls if s > 50),
            "over_20ms": sum(1 for s in stalls if s > 20)}


def causes(stalls: list[float], loop_cpu: list[float], process_cpu: list[float],
           loop_queued: list[float]) -> dict[str, int]:
    """Stalls over 50 ms by what the time went to: the loop's thread computing (half the gap
    or more on the CPU), the process's other threads computing (idem), the loop's thread
    runnable but waiting for a CPU (half the gap or more in the run queue, from the
    kernel's schedstat: the machine is busy elsewhere), or none of these: the loop's thread
    was blocked (waiting for the GIL, a lock or I/O)."""
    out = {"loop_computing": 0, "other_threads_computing": 0, "waiting_for_a_cpu": 0,
           "blocked": 0}
    for s, c, p, q in zip(stalls, loop_cpu, process_cpu, loop_queued, strict=True):
        if s <= 50:
            continue
        gap = s + INTERVAL_MS
        if c >= gap / 2:
            out["loop_computing"] += 1
        elif p - c >= gap / 2:
            out["other_threads_computing"] += 1
        elif q >= gap / 2:
            out["waiting_for_a_cpu"] += 1
        else:
            out["blocked"] += 1
    return out


def run_queue_ms() -> float:
    """How long the calling thread has waited in a run queue, in ms (kernel schedstat)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


# ---- one round, in its own process ---------------------------------------------------------
class Heartbeat:
    def __init__(self, diagnose: bool) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.beats: list[float] = []
        self.cpu: list[float] = []
        self.pcpu: list[float] = []
        self.rq: list[float] = []
        self.queued: list[float] = []
        self.busy: list[float] = []
        self.process_busy: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(INTERVAL_MS)
        self.timer.timeout.connect(self._beat)
        self.stacks: Counter[str] = Counter()
        self.waits: Counter[str] = Counter()
        self._diagnose = diagnose
        self._main = threading.get_ident()
        self._main_tid = threading.get_native_id()
        self._stop = threading.Event()

    def _beat(self) -> None:
        self.beats.append(time.perf_counter())
        self.cpu.append(time.thread_time())
        self.pcpu.append(time.process_time())
        self.rq.append(run_queue_ms())

    def start(self) -> None:
        self.beats = [time.perf_counter()]
        self.cpu = [time.thread_time()]
        self.pcpu = [time.process_time()]
        self.rq = [run_queue_ms()]
        self._stop = threading.Event()
        self.timer.start()
        if self._diagnose:
            threading.Thread(target=self._watch, daemon=True).start()

    def stop(self) -> list[float]:
        """The stall of each beat (ms); self.busy: the loop thread's CPU time in each gap."""
        self.timer.stop()
        self._stop.set()
        gaps = [(b - a) * 1000 for a, b in zip(self.beats, self.beats[1:], strict=False)]
        self.busy = [(b - a) * 1000 for a, b in zip(self.cpu, self.cpu[1:], strict=False)]
        self.process_busy = [(b - a) * 1000
                             for a, b in zip(self.pcpu, self.pcpu[1:], strict=False)]
        self.queued = [b - a for a, b in zip(self.rq, self.rq[1:], strict=False)]
        return [max(0.0, g - INTERVAL_MS) for g in gaps]

    def _watch(self) -> None:
        """While the loop is late, note what the main thread is doing."""
        while not self._stop.wait(0.005):
            last = self.beats[-1] if self.beats else time.perf_counter()
            if (time.perf_counter() - last) * 1000 > INTERVAL_MS + 30:
                # The kernel's view: running (R), sleeping (S) and where (wchan: a futex is
                # the GIL or a lock, epoll/poll is the event loop idle), or in I/O (D).
                task = f"/proc/self/task/{self._main_tid}"
                try:
                    state = Path(f"{task}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    wchan = Path(f"{task}/wchan").read_text().strip() or "-"
                    self.waits[f"{state} {wchan}"] += 1
                except OSError:
                    pass
                frame = sys._current_frames().get(self._main)
                if frame is not None:
                    lines = traceback.format_stack(frame, limit=12)
                    self.stacks["".join(line for line in lines
                                        if "site-packages/qasync" not in line)] += 1


def measure_round(inventory: Path, bandwidth: int, disk_bandwidth: int, seconds: float,
                  diagnose: bool) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["QT_API"] = "pyside6"
    import asyncio

    import qasync
    from PySide6.QtWidgets import QApplication

    from xencenter_lite.core.inventory import load_inventory
    from xencenter_lite.core.jobs import JobState
    from xencenter_lite.core.plan import MigrationRequest
    from xencenter_lite.engine import Engine
    from xencenter_lite.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    result: dict[str, Any] = {}

    async def main() -> None:
        engine = Engine(load_inventory(inventory), concurrency=4)
        window = MainWindow(engine)
        window.show()
        await engine.start()
        snap = engine.snapshot()

        def vm(name: str) -> Any:
            (found,) = engine.snapshot().vms_named(name)
            return found

        build = vm("build-1")
        if not build.is_running:  # the fourth job needs a fourth running VM
            uri = engine.snapshot().servers[build.server].uri
            await loop.run_in_executor(None, lambda: subprocess.run(
                ["virsh", "-c", uri, "start", build.uuid], check=True, capture_output=True))
            await engine.refresh(build.server)
            build = vm("build-1")
        web, db, app_vm = vm("web-1"), vm("db-1"), vm("app-1")
        requests = [
            MigrationRequest(web.key, "lab-a2" if web.server == "lab-a1" else "lab-a1"),
            MigrationRequest(db.key, "lab-b1" if db.server != "lab-b1" else "lab-a1",
                             sr="Local storage"),
            MigrationRequest(app_vm.key, "lab-a1" if app_vm.server == "lab-b1" else "lab-b1",
                             sr="Local storage"),
        ]
        # A bandwidth cap per job so that each lasts about `seconds` (memory is sent once
        # more or less; the guests keep dirtying some of it).
        requests = [replace(r, bandwidth_mib_s=bandwidth or max(
            2, math.ceil((engine.plan(r).bytes_to_copy + 160 * MIB) / MIB / seconds)))
            for r in requests]
        vda = build.disk("vda")
        target_sr = "Shared storage" if vda.sr == "Local storage" else "Local storage"
        disk_bw = disk_bandwidth or max(2, math.ceil(vda.capacity / MIB / seconds))
        window.select(("vm", web.key))  # its Properties follow the job as well

        events_updates = 0

        def counted(*_a: Any) -> None:
            nonlocal events_updates
            events_updates += 1

        window.events.model.dataChanged.connect(counted)
        beat = Heartbeat(diagnose)
        beat.start()
        await asyncio.sleep(3.0)
        idle = beat.stop()
        beat.stacks.clear()

        beat.start()
        t0 = time.perf_counter()
        c0 = time.thread_time()
        jobs = engine.migrate(requests)
        jobs.append(engine.move_disk(build.key, "vda", target_sr, disk_bw))
        start_cpu_ms = (time.thread_time() - c0) * 1000
        running_together = 0

        while not all(j.state.finished for j in jobs):
            running_together = max(running_together,
                                   sum(1 for j in jobs if j.state.running))
            await asyncio.sleep(0.05)
            if time.perf_counter() - t0 > 300:
                break
        t_jobs = time.perf_counter() - t0
        await asyncio.sleep(1.0)
        stalls = beat.stop()
        result.update({
            "servers": sorted(snap.servers),
            "jobs": [{"title": j.title, "state": j.state.value, "seconds": round(j.elapsed, 2),
                      "error": j.error} for j in jobs],
            "bandwidths_mib_s": [r.bandwidth_mib_s for r in requests] + [disk_bw],
            "all_done": all(j.state is JobState.DONE for j in jobs),
            "max_jobs_running_together": running_together,
            "jobs_wall_s": round(t_jobs, 2),
            "events_view_updates": events_updates,
            "idle": stall_summary(idle),
            "during_jobs": stall_summary(stalls),
            # Each stall over 20 ms: [stall, CPU time of the loop's thread in it, CPU time
            # of the whole process in it, time the loop's thread waited in a run queue]. A
            # stall the loop's thread spent on the CPU is the console's own work; one it
            # spent in a run queue, the machine's; the rest it was blocked (the GIL, a lock,
            # I/O).
            "stalls_ms": [[round(s, 1), round(c, 1), round(p, 1), round(q, 1)]
                          for s, c, p, q in zip(stalls, beat.busy, beat.process_busy,
                                                beat.queued, strict=True)
                          if s > 20],
            "stalls_over_50ms_by_cause": causes(stalls, beat.busy, beat.process_busy,
                                                beat.queued),
            "max_busy_gap_ms": round(max(beat.busy, default=0.0), 1),
            "starting_the_jobs_cpu_ms": round(start_cpu_ms, 1),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        })
        if diagnose:
            result["stall_stacks"] = [{"samples": n, "stack": s}
                                      for s, n in beat.stacks.most_common(6)]
            result["stall_kernel_states"] = dict(beat.waits.most_common(10))
        window._really_close = True
        window.close()
        await engine.close()

    with loop:
        loop.run_until_complete(main())
    return result


# ---- driver ---------------------------------------------------------------------------------
def place_servers(config: Any, group: Path) -> int:
    """Move the lab's tini, libvirtd and QEMU processes into CPU group `group` (what they
    start later follows them); returns how many processes."""
    from xencenter_lite.lab.system import parent_pid

    pids: set[int] = set()
    for server in config.servers:
        run_dir = config.host_dir(server.name) / "run"
        for pid_file in [run_dir / "libvirtd.pid", *run_dir.glob("qemu/*.pid")]:
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            pids.add(pid)
            if pid_file.name == "libvirtd.pid":
                pids.add(parent_pid(pid) or 1)  # its tini
    moved = 0
    for pid in pids - {1}:
        try:
            (group / "cgroup.procs").write_text(str(pid))
            moved += 1
        except OSError:
            continue
    return moved


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="how long each job should last: sets its bandwidth cap")
    ap.add_argument("--bandwidth", type=int, default=0,
                    help="MiB/s cap of each migration instead (0: from --seconds)")
    ap.add_argument("--disk-bandwidth", type=int, default=0,
                    help="MiB/s cap of the disk move instead (0: from --seconds)")
    ap.add_argument("--src", action="append", default=[],
                    help="label=DIR: a checkout of the package to measure (repeatable, "
                         "alternating); default: this repository")
    ap.add_argument("--diagnose", action="store_true")
    ap.add_argument("--compare-shared-cpu", action="store_true",
                    help="also measure with the lab's servers out of their CPU group, "
                         "alternating")
    ap.add_argument("--keep-lab", action="store_true", help="leave the lab up at the end")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench-responsiveness.json"))
    ap.add_argument("--round", metavar="INVENTORY", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.round:
        print(json.dumps(measure_round(Path(args.round), args.bandwidth, args.disk_bandwidth,
                                       args.seconds, args.diagnose)))
        return 0

    os.environ.setdefault("XCL_TEST_LAB_SLOT", "5")
    sys.path.insert(0, str(ROOT))
    from tests.labtools import lab_config_for_slot
    from xencenter_lite.lab import Lab, load_lab_config
    from xencenter_lite.lab.system import idle_cpu_group

    srcs = [s.split("=", 1) if "=" in s else [Path(s).name, s] for s in args.src] or [
        ["current", str(ROOT)]]
    placements = ["servers in their CPU group", "servers sharing the CPU as before"][
        :2 if args.compare_shared_cpu else 1]
    contenders = [(label if len(placements) == 1 else f"{label}, {where}", src, where)
                  for label, src in srcs for where in placements]
    per_src: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in contenders}
    with tempfile.TemporaryDirectory(prefix="xcl-resp-") as tmp:
        config = load_lab_config(lab_config_for_slot(Path(tmp)))
        lab = Lab(config, log=lambda line: print(line, file=sys.stderr))
        lab.down()
        inventory = lab.up()
        own_group = idle_cpu_group(lab.cpu_group_name)
        if own_group is None and args.compare_shared_cpu:
            raise SystemExit("this machine has no CPU controller to put the lab's servers in")
        try:
            n = 0
            for i in range(args.rounds):
                order = contenders if i % 2 == 0 else list(reversed(contenders))
                for label, src, where in order:
                    n += 1
                    if own_group is not None and len(placements) > 1:
                        place_servers(config, own_group if where == placements[0]
                                      else own_group.parent)
                    env = dict(os.environ, PYTHONPATH=src, QT_QPA_PLATFORM="offscreen")
                    cmd = [sys.executable, __file__, "--round", str(inventory), "--bandwidth",
                           str(args.bandwidth), "--disk-bandwidth", str(args.disk_bandwidth),
                           "--seconds", str(args.seconds)]
                    if args.diagnose:
                        cmd.append("--diagnose")
                    out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                         timeout=900)
                    if out.returncode != 0:
                        print(out.stderr[-4000:], file=sys.stderr)
                        raise SystemExit(f"round {n} failed for {label}")
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    per_src[label].append(r)
                    d = r["during_jobs"]
                    print(f"round {i + 1} [{label}]: jobs {r['jobs_wall_s']} s, "
                          f"{r['max_jobs_running_together']} at once, all done "
                          f"{r['all_done']}; stalls p99 {d['p99_ms']} ms, max {d['max_ms']} "
                          f"ms (idle max {r['idle']['max_ms']} ms)", file=sys.stderr)
        finally:
            if not args.keep_lab:
                lab.down()

    def summary(xs: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(xs), 2), "min": round(min(xs), 2),
                "max": round(max(xs), 2), "n": len(xs)}

    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "rounds": args.rounds, "job_seconds": args.seconds}
    for label, rounds in per_src.items():
        results[label] = {
            "p99_stall_ms": summary([r["during_jobs"]["p99_ms"] for r in rounds]),
            "max_stall_ms": summary([r["during_jobs"]["max_ms"] for r in rounds]),
            "stalls_over_50ms_per_round": summary([r["during_jobs"]["over_50ms"]
                                                   for r in rounds]),
            "max_loop_cpu_in_one_gap_ms": summary([r["max_busy_gap_ms"] for r in rounds]),
            "stalls_over_50ms_by_cause": {
                cause: sum(r["stalls_over_50ms_by_cause"][cause] for r in rounds)
                for cause in rounds[0]["stalls_over_50ms_by_cause"]},
            "idle_max_stall_ms": summary([r["idle"]["max_ms"] for r in rounds]),
            "idle_p99_stall_ms": summary([r["idle"]["p99_ms"] for r in rounds]),
            "jobs_wall_s": summary([r["jobs_wall_s"] for r in rounds]),
            "all_jobs_done": all(r["all_done"] for r in rounds),
            "max_jobs_running_together": min(r["max_jobs_running_together"] for r in rounds),
            "rounds": rounds,
        }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "rounds"}
                          if isinstance(v, dict) else v) for k, v in results.items()},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
