"""Our own metadata inside a VM's libvirt XML: home server and folder travel with the VM."""

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
    return VmMetadata(home_server=home, folder=folder)


def render_metadata(meta: VmMetadata) -> str:
    """The `<vm>` element for `meta`, ready for libvirt's setMetadata or a domain's XML."""
    root = ET.Element(f"{{{NAMESPACE}}}vm")
    if meta.home_server:
        ET.SubElement(root, f"{{{NAMESPACE}}}home").text = meta.home_server
    if meta.folder:
        ET.SubElement(root, f"{{{NAMESPACE}}}folder").text = meta.folder
    ET.register_namespace(PREFIX, NAMESPACE)
    return ET.tostring(root, encoding="unicode")
