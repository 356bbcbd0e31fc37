"""Proving that an SR is the same storage on every member of a pool.

The same name and path prove nothing: virt-install's `default` pool is at
/var/lib/libvirt/images on every host, and each host's files there are its own. A network
pool (netfs, rbd, gluster, iscsi…) with the same source on every member is shared by what
it is. A directory or file-system pool is shared only if a probe says so: a volume with a
random name and size is made through one member and must then be seen, with that size,
through every other after a refresh; it is removed again (through the undo log, so a
server that stops answering mid-probe does not leave it behind). Verdicts are kept per
group of members and SRs; a member that connects again is probed again.
"""

from __future__ import annotations

import logging
import secrets
import uuid as uuidlib
from dataclasses import dataclass

from xencenter_lite.core.cleanup import Cleanup, CleanupKind
from xencenter_lite.core.model import NETWORK_SR_TYPES, SR, Sharing
from xencenter_lite.engine.fleet import Fleet
from xencenter_lite.engine.settle import Settler
from xencenter_lite.virt import VirtError

log = logging.getLogger(__name__)

PROBE_PREFIX = "xcl-probe-"
PROBED_TYPES = frozenset({"dir", "fs"})


@dataclass(frozen=True)
class _Member:
    server: str
    host_uuid: str
    sr_uuid: str


GroupKey = tuple[str, str, str, str, str, tuple[_Member, ...]]  # pool, name, path, type,
# source, members


class SharingProofs:
    def __init__(self, fleet: Fleet, settler: Settler) -> None:
        self.fleet = fleet
        self.settler = settler
        self.verdicts: dict[GroupKey, Sharing] = {}

    def _group(self, pool: str, sr: SR) -> GroupKey | None:
        """The members of `pool` connected now that have an SR like `sr` (same name, path,
        type and source); None when `sr` has no such twin on another member."""
        fleet = self.fleet
        cfg = next((p for p in fleet.inventory.pools if p.name == pool), None)
        if cfg is None:
            return None
        members: list[_Member] = []
        for m in cfg.members:
            st = fleet.servers.get(m)
            if st is None or not st.connected or st.reading is None or st.identity is None:
                continue
            twin = next((s for s in st.reading.srs if s.name == sr.name), None)
            if twin is None or (twin.path, twin.type, twin.source) != (sr.path, sr.type,
                                                                       sr.source):
                continue
            members.append(_Member(m, st.identity.uuid, twin.uuid))
        if len(members) < 2 or all(m.server != sr.server for m in members):
            return None
        return (pool, sr.name, sr.path, sr.type, sr.source, tuple(members))

    def sharing_of(self, pool: str, sr: SR) -> Sharing:
        """The verdict for `sr` as the snapshot shows it."""
        fleet = self.fleet
        cfg = next((p for p in fleet.inventory.pools if p.name == pool), None)
        if cfg is None or len(cfg.members) < 2:
            return Sharing.LOCAL
        group = self._group(pool, sr)
        if group is None:
            # No other connected member has it: local, unless a member that cannot be read
            # now might (then it is not known).
            unknown = any(not fleet.servers[m].connected for m in cfg.members
                          if m in fleet.servers and m != sr.server)
            return Sharing.UNVERIFIED if unknown else Sharing.LOCAL
        return self.verdicts.get(group, Sharing.UNVERIFIED)

    def forget(self, server: str) -> None:
        """`server` (re)connected: what was proven with it is proven again."""
        for key in [k for k in self.verdicts if any(m.server == server for m in k[5])]:
            del self.verdicts[key]

    async def prove_all(self) -> bool:
        """Give every group a verdict; True if any changed."""
        changed = False
        seen: set[GroupKey] = set()
        for pool in self.fleet.inventory.pools:
            for m in pool.members:
                st = self.fleet.servers.get(m)
                if st is None or st.reading is None or not st.connected:
                    continue
                for sr in st.reading.srs:
                    group = self._group(pool.name, sr)
                    if group is None or group in seen or group in self.verdicts:
                        continue
                    seen.add(group)
                    verdict = await self._prove(group)
                    if verdict is not Sharing.UNVERIFIED:
                        self.verdicts[group] = verdict
                    changed = True
        return changed

    async def _prove(self, group: GroupKey) -> Sharing:
        pool, name, path, sr_type, source, members = group
        if sr_type in NETWORK_SR_TYPES:
            return Sharing.VERIFIED if source else Sharing.UNVERIFIED
        if sr_type not in PROBED_TYPES:
            return Sharing.NOT_SHARED  # a local kind of storage (LVM, a disk, ZFS…)
        fleet = self.fleet
        first, others = members[0], members[1:]
        volume = f"{PROBE_PREFIX}{uuidlib.uuid4().hex}.img"
        capacity = 512 * (1 + secrets.randbelow(4096))
        undo = self.settler.new_log()
        entry = undo.record(Cleanup(CleanupKind.VOLUME, first.server, first.host_uuid,
                                    job=f"Checking whether SR '{name}' of pool '{pool}' is "
                                    "shared", sr=name, volume=volume))
        verdict = Sharing.UNVERIFIED
        try:
            made = await fleet.call(first.server, fleet.link(first.server).create_volume,
                                    name, volume, capacity, "raw")
            entry = undo.amend(entry, path=made)
            seen = True
            for m in others:
                got = await fleet.call(m.server, fleet.link(m.server).volume_capacity,
                                       name, volume)
                seen = seen and got == capacity
            verdict = Sharing.VERIFIED if seen else Sharing.NOT_SHARED
        except VirtError as exc:
            log.info("could not check SR '%s' of pool '%s' (%s): %s", name, pool, path,
                     exc.raw)
        finally:
            left = await self.settler.unwind(undo, lambda m: log.debug("%s", m))
            if left:
                log.warning("the probe volume %s is left on %s until it can be removed",
                            volume, first.server)
        log.debug("SR '%s' of pool '%s' (%s on %s): %s", name, pool, path,
                 ", ".join(m.server for m in members), verdict.value)
        return verdict
