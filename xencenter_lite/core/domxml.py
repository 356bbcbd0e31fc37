"""Reading and rewriting libvirt domain XML (pure text in, text out).

Used to learn a VM's disks and devices, and to build the destination and persistent XML
of a storage migration: each copied disk's source moves to its new path, and our metadata
(home server, folder) is set so it travels with the VM.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from xencenter_lite.core.metadata import (
    NAMESPACE,
    PREFIX,
    VmMetadata,
    parse_metadata,
    render_metadata,
)

ET.register_namespace(PREFIX, NAMESPACE)


@dataclass(frozen=True)
class DiskXml:
    dev: str
    device: str
    source_type: str
    path: str | None  # file or device; for a type='volume' disk, the volume's name
    format: str
    readonly: bool
    pool: str | None = None  # a type='volume' disk's pool (SR) name


@dataclass(frozen=True)
class NicXml:
    mac: str
    type: str  # libvirt's interface type: "network", "bridge", "user", "direct", ...
    source: str  # the network's or bridge's name ("" for other types)
    model: str
    bridge: str = ""  # the host bridge it is plugged into, where the XML says (running VMs)


@dataclass(frozen=True)
class DomainXml:
    name: str
    uuid: str
    memory: int  # bytes
    vcpus: int
    disks: tuple[DiskXml, ...]
    has_hostdev: bool
    metadata: VmMetadata
    virt_type: str = "kvm"  # <domain type=...>: "kvm", or "qemu" (TCG, software emulation)
    has_balloon: bool = True  # a <memballoon> device (not model 'none'): DMC can use it
    nics: tuple[NicXml, ...] = ()
    # The <cpu> a live migration must find on the destination: a named model with its
    # features (a running VM's host-model shows as one); "" for host-passthrough or none.
    cpu: str = ""
    arch: str = "x86_64"


def _cpu(root: ET.Element) -> str:
    """The <cpu> to ask a destination about: one libvirt itself checks (check='none' means
    QEMU quietly drops what the host lacks, as a halted VM's definition often says)."""
    cpu = root.find("cpu")
    if cpu is None or cpu.get("mode", "custom") not in ("custom", "host-model") \
            or cpu.get("check") == "none" or not (cpu.findtext("model") or "").strip():
        return ""
    cpu = copy.deepcopy(cpu)
    cpu.tail = None
    return ET.tostring(cpu, encoding="unicode")


_UNIT = {"b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mib": 1024**2,
         "mb": 1000**2, "g": 1024**3, "gib": 1024**3, "gb": 1000**3}


def _memory(el: ET.Element | None) -> int:
    if el is None or not (el.text or "").strip():
        return 0
    unit = el.get("unit", "KiB").lower()
    return int(el.text or 0) * _UNIT.get(unit, 1024)


def _disk_source(disk: ET.Element) -> str | None:
    src = disk.find("source")
    if src is None:
        return None
    return src.get("file") or src.get("dev") or src.get("volume") or src.get("name")


def parse_domain(xml: str) -> DomainXml:
    root = ET.fromstring(xml)
    disks = []
    for d in root.findall("./devices/disk"):
        target = d.find("target")
        driver = d.find("driver")
        disks.append(DiskXml(
            dev=target.get("dev", "") if target is not None else "",
            device=d.get("device", "disk"),
            source_type=d.get("type", "file"),
            path=_disk_source(d),
            format=(driver.get("type") if driver is not None else None) or "raw",
            readonly=d.find("readonly") is not None,
            pool=src.get("pool") if (src := d.find("source")) is not None else None,
        ))
    meta_el = root.find(f"./metadata/{{{NAMESPACE}}}vm")
    meta = parse_metadata(ET.tostring(meta_el, encoding="unicode")) if meta_el is not None \
        else VmMetadata()
    vcpu = root.findtext("vcpu") or "1"
    os_type = root.find("./os/type")
    return DomainXml(
        name=root.findtext("name") or "",
        uuid=root.findtext("uuid") or "",
        memory=_memory(root.find("memory")),
        vcpus=int(vcpu.strip() or 1),
        disks=tuple(disks),
        has_hostdev=root.find("./devices/hostdev") is not None,
        metadata=meta,
        virt_type=root.get("type", "kvm"),
        has_balloon=any(b.get("model", "none") != "none"
                        for b in root.findall("./devices/memballoon")),
        nics=tuple(_nic(n) for n in root.findall("./devices/interface")),
        cpu=_cpu(root),
        arch=os_type.get("arch", "x86_64") if os_type is not None else "x86_64",
    )


def _mac(nic: ET.Element) -> str:
    """An interface's MAC address, lower case ("" without one)."""
    mac = nic.find("mac")
    return (mac.get("address", "") if mac is not None else "").lower()


def _nic(el: ET.Element) -> NicXml:
    kind = el.get("type", "")
    src = el.find("source")
    source = ""
    if src is not None and src.get("network"):
        # A NIC on a libvirt network, even where the running VM's XML says type='bridge'
        # (libvirt writes the network's bridge beside it once the NIC is plugged in).
        kind, source = "network", src.get("network", "")
    elif src is not None and kind == "bridge":
        source = src.get("bridge", "")
    model = el.find("model")
    return NicXml(mac=_mac(el), type=kind,
                  source=source, model=model.get("type", "") if model is not None else "",
                  bridge=src.get("bridge", "") if src is not None else "")


def rewrite_nics(xml: str, targets: dict[str, tuple[str, str]]) -> str:
    """Put each NIC in `targets` (MAC -> (type, name): ("network", "lan") or ("bridge",
    "br0")) on that network or bridge; the rest of each NIC (its MAC, model, address on the
    bus) stays as it was."""
    if not targets:
        return xml
    root = ET.fromstring(xml)
    for nic in root.findall("./devices/interface"):
        address = _mac(nic)
        if address not in targets:
            continue
        kind, name = targets[address]
        nic.set("type", kind)
        src = nic.find("source")
        if src is None:
            src = ET.SubElement(nic, "source")
        src.attrib.clear()  # (a running NIC's source also names its port and bridge)
        src.set(kind, name)
    return ET.tostring(root, encoding="unicode")


def rewrite_domain(xml: str, new_paths: dict[str, str], metadata: VmMetadata | None = None,
                   formats: dict[str, str] | None = None,
                   pools: dict[str, str] | None = None) -> str:
    """Point each disk in `new_paths` (dev -> file) at its new file; set our metadata.

    A disk that names its volume by pool (`<disk type='volume'>`) and whose new file is in
    the pool `pools` gives for it (dev -> SR name) is named so again: the new volume (a
    directory pool's volume is named as its file) in that pool."""
    root = ET.fromstring(xml)
    for d in root.findall("./devices/disk"):
        target = d.find("target")
        dev = target.get("dev") if target is not None else None
        if dev is None or dev not in new_paths:
            continue
        by_volume = d.get("type") == "volume" and pools is not None and dev in pools
        d.set("type", "volume" if by_volume else "file")
        src = d.find("source")
        if src is None:
            src = ET.SubElement(d, "source")
        for attr in list(src.attrib):
            if attr not in ("startupPolicy",):
                del src.attrib[attr]
        if by_volume:
            assert pools is not None
            src.set("pool", pools[dev])
            src.set("volume", new_paths[dev].rsplit("/", 1)[-1])
        else:
            src.set("file", new_paths[dev])
        for child in list(src):  # drop a stale backing <seclabel>/<reservations>
            src.remove(child)
        if formats and dev in formats:
            drv = d.find("driver")
            if drv is None:
                drv = ET.SubElement(d, "driver", {"name": "qemu"})
            drv.set("type", formats[dev])
    if metadata is not None:
        meta = root.find("metadata")
        if meta is None:
            meta = ET.SubElement(root, "metadata")
        for old in meta.findall(f"{{{NAMESPACE}}}vm"):
            meta.remove(old)
        meta.append(ET.fromstring(render_metadata(metadata)))
    return ET.tostring(root, encoding="unicode")


def copy_domain(xml: str, name: str, new_paths: dict[str, str], metadata: VmMetadata,
                pools: dict[str, str] | None = None) -> str:
    """A copy of a domain's (inactive) definition as a new VM: its name, no UUID and no MAC
    addresses (libvirt makes new ones when it is defined), each disk in `new_paths` on its
    new file (see rewrite_domain for `pools`), and our metadata."""
    root = ET.fromstring(rewrite_domain(xml, new_paths, metadata, pools=pools))
    name_el = root.find("name")
    if name_el is None:
        name_el = ET.SubElement(root, "name")
    name_el.text = name
    for uuid_el in root.findall("uuid"):
        root.remove(uuid_el)
    for nic in root.findall("./devices/interface"):
        for mac in nic.findall("mac"):
            nic.remove(mac)
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class VolumeLayout:
    """What a copy keeps of its source image's layout: a qcow2 image's compat level and
    cluster size (None: not known, libvirt's default)."""

    compat: str | None = None
    cluster_size: int | None = None


def volume_layout(volume_xml: str) -> VolumeLayout:
    """The layout a storage volume's XML reports (libvirt reads it from the image)."""
    target = ET.fromstring(volume_xml).find("target")
    if target is None:
        return VolumeLayout()
    compat = (target.findtext("compat") or "").strip() or None
    size_el = target.find("clusterSize")
    size = None
    if size_el is not None and (size_el.text or "").strip():
        size = int((size_el.text or "0").strip()) * _UNIT.get(size_el.get("unit", "b").lower(), 1)
    return VolumeLayout(compat, size)


def volume_xml(name: str, capacity: int, fmt: str,
               layout: VolumeLayout | None = None) -> str:
    """A storage volume definition for libvirt's createXML. A qcow2 volume keeps `layout`
    (without it libvirt makes compat 0.10 images, which newer features cannot use)."""
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", {"unit": "bytes"}).text = str(capacity)
    ET.SubElement(vol, "allocation", {"unit": "bytes"}).text = "0"
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", {"type": fmt})
    if fmt == "qcow2" and layout is not None:
        if layout.compat:
            ET.SubElement(target, "compat").text = layout.compat
        if layout.cluster_size:
            ET.SubElement(target, "clusterSize", {"unit": "B"}).text = str(layout.cluster_size)
    return ET.tostring(vol, encoding="unicode")


def block_copy_dest_xml(path: str, fmt: str) -> str:
    disk = ET.Element("disk", {"type": "file"})
    ET.SubElement(disk, "driver", {"type": fmt})
    ET.SubElement(disk, "source", {"file": path})
    return ET.tostring(disk, encoding="unicode")


def referenced_paths(xml: str) -> frozenset[str]:
    """Every file or device a domain (or a snapshot's) XML refers to as a disk: each disk's
    source and everything in its backing chain. A volume listed here is in use."""
    root = ET.fromstring(xml)
    found: set[str] = set()
    for disk in root.iter("disk"):
        for src in disk.iter("source"):
            path = src.get("file") or src.get("dev")
            if path:
                found.add(path)
    return frozenset(found)


def referenced_volumes(xml: str) -> frozenset[tuple[str, str]]:
    """The (pool, volume) of every disk a domain (or snapshot) XML names by pool and volume
    name (`<disk type='volume'>`, as virt-manager may write): in use too, though no path
    appears in the XML."""
    root = ET.fromstring(xml)
    found: set[tuple[str, str]] = set()
    for disk in root.iter("disk"):
        for src in disk.iter("source"):
            pool, volume = src.get("pool"), src.get("volume")
            if pool and volume:
                found.add((pool, volume))
    return frozenset(found)


def disk_path_of(xml: str, dev: str) -> str | None:
    """The source file (or device) of disk `dev` in a domain XML; None without one."""
    root = ET.fromstring(xml)
    for d in root.findall("./devices/disk"):
        target = d.find("target")
        if target is not None and target.get("dev") == dev:
            return _disk_source(d)
    return None


def volume_backing(volume_xml: str) -> str | None:
    """The backing file a storage volume's XML names (None: a standalone image)."""
    root = ET.fromstring(volume_xml)
    path = root.findtext("./backingStore/path")
    return path.strip() if path and path.strip() else None


def parse_network(xml: str) -> tuple[str, str]:
    """A libvirt network's (bridge, forward mode) from its XML ("" where it has none)."""
    root = ET.fromstring(xml)
    bridge = root.find("bridge")
    forward = root.find("forward")
    return ((bridge.get("name", "") if bridge is not None else ""),
            (forward.get("mode", "nat") if forward is not None else ""))


@dataclass(frozen=True)
class PoolXml:
    type: str
    path: str
    source: str = ""  # a network pool's source: "host[,host]:dir-or-name"; "" for local ones


def parse_pool(xml: str) -> PoolXml:
    root = ET.fromstring(xml)
    src = root.find("source")
    source = ""
    if src is not None:
        hosts = ",".join(sorted(f"{h.get('name', '')}" + (f":{h.get('port')}" if h.get("port")
                                                          else "")
                                for h in src.findall("host")))
        where = (next((e.get("path") for e in src.findall("dir") if e.get("path")), None)
                 or src.findtext("name") or next((e.get("path") for e in src.findall("device")
                                                  if e.get("path")), None) or "")
        if hosts or where:
            source = f"{hosts}:{where}"
    return PoolXml(type=root.get("type", ""), path=root.findtext("./target/path") or "",
                   source=source)


def io_targets(xml: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The devices a running domain's I/O counters are asked by: its disks' target names
    ("vda"; CD-ROMs and floppies left out) and its NICs' host-side devices ("vnet0"; a NIC
    without one has no counters)."""
    root = ET.fromstring(xml)
    disks = tuple(t.get("dev", "") for d in root.findall("./devices/disk")
                  if d.get("device", "disk") in ("disk", "lun")
                  and (t := d.find("target")) is not None and t.get("dev"))
    nics = tuple(t.get("dev", "") for n in root.findall("./devices/interface")
                 if (t := n.find("target")) is not None and t.get("dev"))
    return disks, nics
