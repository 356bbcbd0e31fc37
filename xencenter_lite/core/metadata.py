"""Our own metadata inside a VM's libvirt XML: home server, folder, the Dynamic Memory
Control range, and the server it left for maintenance travel with the VM."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

NAMESPACE = "urn:xencenter-lite:vm:1"
PREFIX = "xcl"
KEY = PREFIX  # libvirt's metadata key (the element prefix it uses)


@dataclass(frozen=True)
class VmMetadata:
    home_server: str | None = None
    folder: str = ""
    dynamic_min: int | None = None  # bytes: the balloon may squeeze the VM down to this
    dynamic_max: int | None = None  # bytes: and let it grow up to this
    # The host UUID of the server the VM was moved off when that server entered maintenance
    # mode: leaving maintenance mode brings such VMs back.
    evacuated_from: str | None = None


def _bytes(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_metadata(xml: str | None) -> VmMetadata:
    """Parse the `<vm>` element of our namespace (as libvirt's metadata() returns it)."""
    if not xml:
        return VmMetadata()
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return VmMetadata()
    home = root.findtext(f"{{{NAMESPACE}}}home") or None
    folder = root.findtext(f"{{{NAMESPACE}}}folder") or ""
    mem = root.find(f"{{{NAMESPACE}}}memory")
    dmin = _bytes(mem.get("dynamic-min")) if mem is not None else None
    dmax = _bytes(mem.get("dynamic-max")) if mem is not None else None
    evacuated = root.findtext(f"{{{NAMESPACE}}}evacuated-from") or None
    return VmMetadata(home_server=home, folder=folder, dynamic_min=dmin, dynamic_max=dmax,
                      evacuated_from=evacuated)


def render_metadata(meta: VmMetadata, *, namespaced: bool = True) -> str:
    """The `<vm>` element for `meta`: in our namespace for a domain's XML, or plain for
    libvirt's setMetadata, which puts it in the namespace itself (and refuses one given)."""
    ns = f"{{{NAMESPACE}}}" if namespaced else ""
    root = ET.Element(f"{ns}vm")
    if meta.home_server:
        ET.SubElement(root, f"{ns}home").text = meta.home_server
    if meta.folder:
        ET.SubElement(root, f"{ns}folder").text = meta.folder
    if meta.dynamic_min is not None or meta.dynamic_max is not None:
        mem = ET.SubElement(root, f"{ns}memory", {"unit": "bytes"})
        if meta.dynamic_min is not None:
            mem.set("dynamic-min", str(meta.dynamic_min))
        if meta.dynamic_max is not None:
            mem.set("dynamic-max", str(meta.dynamic_max))
    if meta.evacuated_from:
        ET.SubElement(root, f"{ns}evacuated-from").text = meta.evacuated_from
    ET.register_namespace(PREFIX, NAMESPACE)
    return ET.tostring(root, encoding="unicode")
