"""libvirt XML for the lab's guests and SRs (storage pools of type dir)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from xencenter_lite.core.metadata import VmMetadata, render_metadata
from xencenter_lite.lab.config import DiskConfig, GuestConfig, LabConfig, SrConfig
from xencenter_lite.lab.guestimage import RECORDS_DISK_SERIAL, GuestImage, kernel_cmdline

# Inside every server's mount namespace /var/log/libvirt is that server's own log directory,
# so a guest's serial log follows it to whichever server runs it.
SERIAL_LOG_DIR = "/var/log/libvirt/qemu"


def disk_file_name(guest: GuestConfig, disk: DiskConfig) -> str:
    return f"{guest.name}-{disk.dev}.{disk.format}"


def disk_path(config: LabConfig, guest: GuestConfig, disk: DiskConfig) -> Path:
    sr = next(s for s in config.srs if s.name == disk.sr)
    return config.sr_path(sr, guest.server) / disk_file_name(guest, disk)


def guest_xml(
    config: LabConfig,
    guest: GuestConfig,
    domain_type: str,
    image: GuestImage | None = None,
    cache: str | None = None,
) -> str:
    """A tiny guest, no network, virtio disks: a Linux workload guest booted straight from
    `image` (os = "linux"), or no OS at all (SeaBIOS finds nothing to boot). `cache` is
    the disks' cache mode (None: the hypervisor's default)."""
    dom = ET.Element("domain", type=domain_type)
    ET.SubElement(dom, "name").text = guest.name
    ET.SubElement(dom, "uuid").text = config.guest_uuid(guest.name)
    ET.SubElement(dom, "metadata")
    ET.SubElement(dom, "memory", unit="MiB").text = str(guest.memory_mib)
    ET.SubElement(dom, "currentMemory", unit="MiB").text = str(guest.memory_mib)
    ET.SubElement(dom, "vcpu", placement="static").text = str(guest.vcpus)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    if guest.linux:
        if image is None:
            raise ValueError(f"{guest.name} is a linux guest: pass the guest image")
        ET.SubElement(os_el, "kernel").text = str(image.kernel)
        ET.SubElement(os_el, "initrd").text = str(image.initrd)
        ET.SubElement(os_el, "cmdline").text = kernel_cmdline(guest)
    else:
        ET.SubElement(os_el, "boot", dev="hd")
        # Print SeaBIOS's messages on the serial port; never reboot after "No bootable device".
        ET.SubElement(os_el, "bios", useserial="yes", rebootTimeout="-1")
    features = ET.SubElement(dom, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "on_reboot").text = "restart"
    ET.SubElement(dom, "on_crash").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    for disk in guest.disks:
        el = ET.SubElement(devices, "disk", type="file", device="disk")
        driver = ET.SubElement(el, "driver", name="qemu", type=disk.format)
        if cache is not None:
            driver.set("cache", cache)
        ET.SubElement(el, "source", file=str(disk_path(config, guest, disk)))
        ET.SubElement(el, "target", dev=disk.dev, bus="virtio")
        if guest.linux and disk is guest.disks[-1]:
            ET.SubElement(el, "serial").text = RECORDS_DISK_SERIAL  # how /init finds it
    ET.SubElement(devices, "controller", type="usb", model="none")
    serial = ET.SubElement(devices, "serial", type="file")
    # append: a guest that comes back to a server adds to the log it left there.
    ET.SubElement(serial, "source", path=f"{SERIAL_LOG_DIR}/{guest.name}-serial.log",
                  append="on")
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "memballoon", model="virtio")
    text = ET.tostring(dom, encoding="unicode")
    metadata = render_metadata(VmMetadata(home_server=guest.server, folder=guest.folder))
    return text.replace("<metadata />", f"<metadata>{metadata}</metadata>", 1)


def pool_xml(config: LabConfig, sr: SrConfig, server: str) -> str:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = sr.name
    ET.SubElement(pool, "uuid").text = config.sr_uuid(sr, server)
    target = ET.SubElement(pool, "target")
    ET.SubElement(target, "path").text = str(config.sr_path(sr, server))
    return ET.tostring(pool, encoding="unicode")
