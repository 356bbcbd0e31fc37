"""Placement: which server should take a VM, and one plan to empty a server for
maintenance.

Pure and deterministic: a Snapshot in, ratings with their reasons out. A server that can
take the VM (the same checks a migration runs pass for the default plan to it) gets a score
out of 100 from what an operator weighs:

- memory left on it after the move (35): more headroom, more points; a move that only fits
  once Dynamic Memory Control squeezes its VMs gets few;
- no disk copy (25): the same pool and a proven-shared SR, so only memory moves;
- the VM's home server (15);
- the same pool (10);
- the link the move takes (10): its rate against the fastest network the inventory knows;
- SR space left after the disks are copied there (5).

Ties go to the server named first in alphabetical order, so the same fleet always gives the
same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from xencenter_lite.core.checks import Problem, blocking, check_plans
from xencenter_lite.core.model import SR, VM, Snapshot, VmState
from xencenter_lite.core.plan import MigrationKind, MigrationPlan, MigrationRequest, build_plan
from xencenter_lite.core.units import format_bytes

W_MEMORY, W_NO_COPY, W_HOME, W_POOL, W_LINK, W_SPACE = 35, 25, 15, 10, 10, 5
W_SQUEEZED = 5  # the memory points of a move that needs Dynamic Memory Control


@dataclass(frozen=True)
class Rating:
    """How well `server` would take the VM; `problems` say why it cannot (then no score)."""

    server: str
    score: float
    reasons: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    plan: MigrationPlan | None = None

    @property
    def eligible(self) -> bool:
        return not self.problems

    @property
    def stars(self) -> int:
        """1 to 5 for a server that can take the VM (as XenCenter's ratings), else 0."""
        if not self.eligible:
            return 0
        return max(1, min(5, 1 + int(self.score // 20)))

    def to_json(self) -> dict[str, object]:
        return {"server": self.server, "eligible": self.eligible,
                "score": round(self.score, 1), "stars": self.stars,
                "reasons": list(self.reasons),
                "problems": [p.to_json() for p in self.problems]}


def rate(snapshot: Snapshot, vm: VM, destination: str,
         busy: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
         request: MigrationRequest | None = None) -> Rating:
    """Rate one server for `vm`, with the default plan to it (or `request`'s)."""
    req = request or MigrationRequest(vm.key, destination)
    if req.destination != destination:
        req = replace(req, destination=destination)
    plan = build_plan(snapshot, vm, req)
    problems = tuple(blocking(check_plans(snapshot, [plan], set(busy))))
    if problems:
        return Rating(destination, 0.0, (), problems, plan)
    reasons: list[str] = []
    score = 0.0

    srv = snapshot.servers[destination]
    left = snapshot.memory_available(destination) - vm.memory
    if left >= 0:
        room = srv.memory_limit or srv.host_memory or snapshot.memory_available(destination)
        share = min(1.0, left / room) if room > 0 else 0.0
        score += W_MEMORY * share
        reasons.append(f"{format_bytes(left)} of memory left after the move")
    else:
        score += W_SQUEEZED
        reasons.append(f"fits only once Dynamic Memory Control frees {format_bytes(-left)}")

    if plan.kind is MigrationKind.MEMORY:
        score += W_NO_COPY
        reasons.append("no disk copy (its disks are on storage shared with it)")
    else:
        copied = sum(d.capacity for d in plan.copied_disks)
        reasons.append(f"copies {format_bytes(copied)} of disks")

    if vm.home_server == destination:
        score += W_HOME
        reasons.append("its home server")

    pool = snapshot.pool_of(vm.server)
    if pool is not None and destination in pool.members:
        score += W_POOL
        reasons.append(f"in its pool '{pool.name}'")

    net = snapshot.networks.get(plan.network or "")
    fastest = max((n.rate or 0 for n in snapshot.networks.values()), default=0)
    if net is not None and net.rate and fastest:
        score += W_LINK * net.rate / fastest
        reasons.append(f"over the '{net.name}' network ({format_bytes(net.rate)}/s)")
    else:
        score += W_LINK / 2
        reasons.append(f"over the '{plan.network}' network (rate not known)")

    space = _space_share(snapshot, plan)
    score += W_SPACE * space
    return Rating(destination, round(score, 3), tuple(reasons), (), plan)


def _space_needed(plan: MigrationPlan) -> dict[str, int]:
    """Bytes the plan's copied disks take on each SR of the destination."""
    need: dict[str, int] = {}
    for d in plan.copied_disks:
        if d.target_sr is not None:
            need[d.target_sr] = need.get(d.target_sr, 0) + d.capacity
    return need


def _space_share(snapshot: Snapshot, plan: MigrationPlan) -> float:
    """The smallest share of free space the copied disks leave on their SRs (1: none)."""
    shares = [1.0]
    for name, size in _space_needed(plan).items():
        sr = snapshot.sr(plan.destination, name)
        if sr is not None and sr.capacity > 0:
            shares.append(max(0.0, (sr.available - size) / sr.capacity))
    return min(shares)


def rank(snapshot: Snapshot, vm: VM,
         busy: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
         request: MigrationRequest | None = None) -> list[Rating]:
    """Every other server, rated: those that can take the VM first, best first."""
    ratings = [rate(snapshot, vm, name, busy, request)
               for name in sorted(snapshot.servers) if name != vm.server]
    return sorted(ratings, key=lambda r: (not r.eligible, -r.score, r.server))


def best(snapshot: Snapshot, vm: VM,
         busy: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
         request: MigrationRequest | None = None) -> Rating | None:
    """The optimal server for `vm` (None: no server can take it)."""
    ranked = rank(snapshot, vm, busy, request)
    return ranked[0] if ranked and ranked[0].eligible else None


def no_server_reason(ratings: Iterable[Rating]) -> tuple[Problem, ...]:
    """Why no server can take a VM: each distinct problem once, in the servers' order."""
    out: dict[tuple[str, str], Problem] = {}
    for r in ratings:
        for p in r.problems:
            out.setdefault((p.code, p.message), p)
    return tuple(out.values())


def place_together(snapshot: Snapshot, vms: Iterable[VM],
                   busy: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
                   request: Callable[[VM], MigrationRequest] | None = None
                   ) -> list[tuple[VM, list[Rating]]]:
    """The best server for each of `vms` moving at once: each VM's rating counts what the
    ones before it take (bigger VMs are placed first). Returns each VM (in the order given)
    with its ranking; the first rating is the pick when it is eligible."""
    vms = list(vms)
    working = snapshot
    ranked: dict[tuple[str, str], list[Rating]] = {}
    for vm in sorted(vms, key=lambda v: (-v.memory, v.name, v.uuid)):
        ratings = rank(working, vm, busy, request(vm) if request else None)
        ranked[vm.key] = ratings
        if ratings and ratings[0].eligible and ratings[0].plan is not None:
            working = _with_placed(working, ratings[0].plan)
    return [(vm, ranked[vm.key]) for vm in vms]


# ---- maintenance mode -------------------------------------------------------------------------
@dataclass(frozen=True)
class Evacuation:
    """One VM of a server entering maintenance mode: where it goes, or why it stays."""

    vm: VM
    destination: str | None  # None: it stays (see `reason`)
    rating: Rating | None = None  # of the destination
    reason: str = ""  # why it stays, and what to do about it
    problems: tuple[Problem, ...] = ()
    chosen: bool = False  # the operator chose the destination (or to leave the VM)

    @property
    def moves(self) -> bool:
        return self.destination is not None

    def to_json(self) -> dict[str, object]:
        return {"vm": self.vm.name, "uuid": self.vm.uuid, "destination": self.destination,
                "reason": self.reason, "chosen": self.chosen,
                "rating": self.rating.to_json() if self.rating else None,
                "problems": [p.to_json() for p in self.problems]}


def plan_evacuation(snapshot: Snapshot, server: str,
                    busy: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
                    choices: Mapping[str, str | None] | None = None) -> list[Evacuation]:
    """Where each VM on `server` goes when it enters maintenance mode.

    Running VMs go to the best server that can take them, bigger VMs placed first, each
    placement counted against that server's memory and SR space before the next VM is
    placed: two VMs that each fit alone but not together are not both sent to one server.
    `choices` (VM UUID -> server, or None to leave it) are the operator's own picks, taken
    as they are and counted the same way (the checks then refuse one that does not fit).
    Other VMs stay, with the reason."""
    choices = choices or {}
    vms = sorted(snapshot.vms_on(server), key=lambda v: (-v.memory, v.name, v.uuid))
    working = snapshot
    rows: list[Evacuation] = []
    for vm in vms:
        if vm.uuid in choices and choices[vm.uuid] is None:
            rows.append(Evacuation(vm, None, reason="left on the server by the operator",
                                   chosen=True))
            continue
        if vm.state is not VmState.RUNNING:
            what = vm.state.value
            rows.append(Evacuation(vm, None, reason=(
                f"{what}: stays on '{server}' (only running VMs are moved)")))
            continue
        picked = choices.get(vm.uuid)
        ratings = [rate(working, vm, picked, busy)] if picked is not None else \
            rank(working, vm, busy)
        rating: Rating | None = ratings[0] if ratings and ratings[0].eligible else None
        if rating is None or not rating.eligible:
            problems = no_server_reason(ratings)
            reason = "; ".join(p.message for p in problems) or "there is no other server"
            rows.append(Evacuation(vm, None, ratings[0] if picked and ratings else None,
                                   reason=f"no server can take it: {reason}",
                                   problems=problems, chosen=picked is not None))
            continue
        assert rating.plan is not None
        rows.append(Evacuation(vm, rating.server, rating, chosen=picked is not None))
        working = _with_placed(working, rating.plan)
    by_uuid = {r.vm.uuid: r for r in rows}
    return [by_uuid[v.uuid] for v in sorted(vms, key=lambda v: (v.name, v.uuid))]


def evacuation_plans(rows: Iterable[Evacuation]) -> list[MigrationPlan]:
    return [r.rating.plan for r in rows if r.moves and r.rating and r.rating.plan]


def _with_placed(snapshot: Snapshot, plan: MigrationPlan) -> Snapshot:
    """The snapshot as it would be with `plan` done: the VM on the destination, its memory
    taken there, its copied disks' space taken on their SRs."""
    dest = plan.destination
    srv = snapshot.servers[dest]
    servers = dict(snapshot.servers)
    servers[dest] = replace(srv, free_memory=max(0, srv.free_memory - plan.vm.memory))
    moved = replace(plan.vm, server=dest)
    vms = (*(v for v in snapshot.vms if v.key != plan.vm.key), moved)
    need = _space_needed(plan)
    srs: list[SR] = []
    for sr in snapshot.srs:
        taken = need.get(sr.name, 0) if sr.server == dest else 0
        srs.append(replace(sr, available=max(0, sr.available - taken)) if taken else sr)
    return Snapshot(servers, snapshot.pools, snapshot.networks, vms, tuple(srs))
