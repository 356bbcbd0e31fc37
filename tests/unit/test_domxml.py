"""Domain XML: what we read from libvirt and what we hand back to it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from xencenter_lite.core.domxml import (
    VolumeLayout,
    block_copy_dest_xml,
    copy_domain,
    parse_domain,
    parse_pool,
    referenced_paths,
    referenced_volumes,
    rewrite_domain,
    volume_backing,
    volume_layout,
    volume_xml,
)
from xencenter_lite.core.metadata import NAMESPACE, VmMetadata, parse_metadata, render_metadata

DOMAIN = """\
<domain type='kvm' id='7'>
  <name>web-1</name>
  <uuid>6f1c2b9e-3a4d-4e5f-8a9b-0c1d2e3f4a5b</uuid>
  <metadata>
    <xcl:vm xmlns:xcl="urn:xencenter-lite:vm:1">
      <xcl:home>lab-a1</xcl:home>
      <xcl:folder>/Web/Front</xcl:folder>
    </xcl:vm>
    <other:info xmlns:other="urn:example:other">keep me</other:info>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-8.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>
      <source file='/srv/nfs/shared/web-1-vda.qcow2' index='3'>
        <seclabel model='dac' relabel='no'/>
      </source>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/srv/lab-a1/local/web-1-vdb.img' index='2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/srv/nfs/shared/iso/debian.iso' startupPolicy='optional'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sdb' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source dev='/dev/vg0/web-1-data'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
      </source>
    </hostdev>
  </devices>
</domain>
"""


def disk_elements(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    return {d.find("target").get("dev"): d for d in root.findall("./devices/disk")}


def canonical(el: ET.Element) -> str:
    return ET.canonicalize(ET.tostring(el, encoding="unicode"), strip_text=True)


# ---- parsing --------------------------------------------------------------------------------
def test_parse_domain():
    dom = parse_domain(DOMAIN)
    assert dom.name == "web-1"
    assert dom.uuid == "6f1c2b9e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"
    assert dom.memory == 2 * 1024**3
    assert dom.vcpus == 2
    assert dom.has_hostdev is True
    assert dom.metadata == VmMetadata(home_server="lab-a1", folder="/Web/Front")
    summary = [(d.dev, d.device, d.source_type, d.path, d.format, d.readonly) for d in dom.disks]
    assert summary == [
        ("vda", "disk", "file", "/srv/nfs/shared/web-1-vda.qcow2", "qcow2", False),
        ("vdb", "disk", "file", "/srv/lab-a1/local/web-1-vdb.img", "raw", False),
        ("sda", "cdrom", "file", "/srv/nfs/shared/iso/debian.iso", "raw", True),
        ("sdb", "cdrom", "file", None, "raw", True),
        ("vdc", "disk", "block", "/dev/vg0/web-1-data", "raw", False),
    ]


def test_parse_minimal_domain():
    dom = parse_domain("<domain><name>x</name><devices>"
                       "<disk><target dev='hda'/><source volume='v1' pool='p'/></disk>"
                       "</devices></domain>")
    assert (dom.uuid, dom.memory, dom.vcpus, dom.has_hostdev) == ("", 0, 1, False)
    assert dom.metadata == VmMetadata()
    (d,) = dom.disks
    assert (d.dev, d.device, d.source_type, d.path, d.format) == ("hda", "disk", "file", "v1",
                                                                   "raw")


@pytest.mark.parametrize(("text", "expected"), [
    ("<memory>1024</memory>", 1024 * 1024),  # KiB by default
    ("<memory unit='KiB'>1024</memory>", 1024 * 1024),
    ("<memory unit='k'>1024</memory>", 1024 * 1024),
    ("<memory unit='b'>4096</memory>", 4096),
    ("<memory unit='bytes'>4096</memory>", 4096),
    ("<memory unit='KB'>1000</memory>", 1000 * 1000),
    ("<memory unit='MiB'>512</memory>", 512 * 1024**2),
    ("<memory unit='M'>512</memory>", 512 * 1024**2),
    ("<memory unit='MB'>500</memory>", 500 * 1000**2),
    ("<memory unit='GiB'>4</memory>", 4 * 1024**3),
    ("<memory unit='G'>4</memory>", 4 * 1024**3),
    ("<memory unit='GB'>4</memory>", 4 * 1000**3),
    ("<memory unit='KiB'> 2048 </memory>", 2048 * 1024),
    ("<memory unit='KiB'></memory>", 0),
])
def test_memory_units(text, expected):
    assert parse_domain(f"<domain><name>m</name>{text}</domain>").memory == expected


# ---- rewriting ------------------------------------------------------------------------------
def test_rewrite_moves_only_named_disks():
    out = rewrite_domain(DOMAIN, {"vdb": "/srv/lab-b1/fast/web-1-vdb.img"})
    before, after = disk_elements(DOMAIN), disk_elements(out)
    assert list(after) == list(before)
    for dev in ("vda", "sda", "sdb", "vdc"):
        assert canonical(after[dev]) == canonical(before[dev]), dev
    src = after["vdb"].find("source")
    assert src.attrib == {"file": "/srv/lab-b1/fast/web-1-vdb.img"}  # stale index dropped
    assert after["vdb"].get("type") == "file"
    assert after["vdb"].find("driver").attrib == {"name": "qemu", "type": "raw"}
    dom = parse_domain(out)
    assert dom.disks[1].path == "/srv/lab-b1/fast/web-1-vdb.img"
    assert dom.metadata == VmMetadata("lab-a1", "/Web/Front")  # untouched without metadata
    assert dom.has_hostdev and dom.memory == 2 * 1024**3


def test_rewrite_drops_stale_source_children_and_keeps_startup_policy():
    xml = DOMAIN.replace("<source file='/srv/nfs/shared/iso/debian.iso' startupPolicy='optional'/>",
                         "<source file='/srv/nfs/shared/iso/debian.iso' "
                         "startupPolicy='optional'><seclabel model='dac'/></source>")
    out = rewrite_domain(xml, {"vda": "/srv/lab-b1/local/web-1-vda.qcow2",
                               "sda": "/srv/lab-b1/local/debian.iso"})
    after = disk_elements(out)
    assert list(after["vda"].find("source")) == []
    assert after["vda"].find("source").get("file") == "/srv/lab-b1/local/web-1-vda.qcow2"
    assert after["sda"].find("source").attrib == {"file": "/srv/lab-b1/local/debian.iso",
                                                  "startupPolicy": "optional"}


def test_rewrite_block_disk_becomes_file_with_format():
    out = rewrite_domain(DOMAIN, {"vdc": "/srv/lab-b1/fast/web-1-vdc.qcow2"},
                         formats={"vdc": "qcow2"})
    vdc = disk_elements(out)["vdc"]
    assert vdc.get("type") == "file"
    assert vdc.find("source").attrib == {"file": "/srv/lab-b1/fast/web-1-vdc.qcow2"}
    assert vdc.find("driver").get("type") == "qcow2"
    assert vdc.find("driver").get("cache") == "none"
    d = parse_domain(out).disks[4]
    assert (d.source_type, d.path, d.format) == ("file", "/srv/lab-b1/fast/web-1-vdc.qcow2",
                                                 "qcow2")


VOLUME_DOMAIN = """<domain><name>v</name><devices>
  <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
    <source pool='default' volume='v.qcow2'/><target dev='vda'/></disk>
  <disk type='volume' device='disk'><driver name='qemu' type='raw'/>
    <source pool='default' volume='w.raw'/><target dev='vdb'/></disk>
</devices></domain>"""


def test_a_disk_named_by_pool_and_volume_is_named_so_on_its_new_sr():
    """virt-manager's <disk type='volume'>: the copy is the new volume in the target pool,
    not a bare path; without the target pool it becomes the file."""
    out = rewrite_domain(VOLUME_DOMAIN, {"vda": "/srv/b/fast/v-vda.qcow2",
                                         "vdb": "/srv/b/fast/w-vdb.raw"},
                         pools={"vda": "Fast storage"})
    vda, vdb = disk_elements(out)["vda"], disk_elements(out)["vdb"]
    assert vda.get("type") == "volume"
    assert vda.find("source").attrib == {"pool": "Fast storage", "volume": "v-vda.qcow2"}
    assert (parse_domain(out).disks[0].pool, parse_domain(out).disks[0].path) == (
        "Fast storage", "v-vda.qcow2")
    assert vdb.get("type") == "file"
    assert vdb.find("source").attrib == {"file": "/srv/b/fast/w-vdb.raw"}
    # A file disk stays a file disk whatever the pools say.
    plain = rewrite_domain(DOMAIN, {"vdc": "/srv/b/fast/x.qcow2"}, pools={"vdc": "Fast"})
    assert disk_elements(plain)["vdc"].get("type") == "file"


def test_rewrite_adds_missing_source_and_driver():
    xml = ("<domain><name>x</name><devices><disk type='file' device='cdrom'>"
           "<target dev='sdb'/></disk></devices></domain>")
    out = rewrite_domain(xml, {"sdb": "/srv/iso/a.iso"}, formats={"sdb": "raw"})
    d = disk_elements(out)["sdb"]
    assert d.find("source").get("file") == "/srv/iso/a.iso"
    assert d.find("driver").attrib == {"name": "qemu", "type": "raw"}


def test_rewrite_replaces_our_metadata_and_keeps_others():
    out = rewrite_domain(DOMAIN, {}, VmMetadata(home_server="lab-b1", folder="/Moved"))
    root = ET.fromstring(out)
    assert len(root.findall(f"./metadata/{{{NAMESPACE}}}vm")) == 1
    assert root.findtext("./metadata/{urn:example:other}info") == "keep me"
    assert parse_domain(out).metadata == VmMetadata("lab-b1", "/Moved")
    assert canonical(root.find("devices")) == canonical(ET.fromstring(DOMAIN).find("devices"))


def test_rewrite_adds_metadata_when_absent():
    xml = "<domain><name>x</name><devices/></domain>"
    out = rewrite_domain(xml, {}, VmMetadata(home_server="lab-a2"))
    assert parse_domain(out).metadata == VmMetadata("lab-a2", "")
    assert ET.fromstring(out).find(f"./metadata/{{{NAMESPACE}}}vm/{{{NAMESPACE}}}folder") is None


def test_rewrite_with_empty_metadata_clears_ours():
    out = rewrite_domain(DOMAIN, {}, VmMetadata())
    assert parse_domain(out).metadata == VmMetadata()


def test_rewrite_ignores_unknown_devs():
    out = rewrite_domain(DOMAIN, {"vdz": "/x"})
    assert [d.path for d in parse_domain(out).disks] == [d.path for d in
                                                         parse_domain(DOMAIN).disks]


# ---- what we give libvirt -------------------------------------------------------------------
def test_volume_xml():
    root = ET.fromstring(volume_xml("web-1-vda.qcow2", 10 * 1024**3, "qcow2"))
    assert root.tag == "volume"
    assert root.findtext("name") == "web-1-vda.qcow2"
    cap = root.find("capacity")
    assert (cap.get("unit"), cap.text) == ("bytes", str(10 * 1024**3))
    alloc = root.find("allocation")
    assert (alloc.get("unit"), alloc.text) == ("bytes", "0")
    assert root.find("./target/format").get("type") == "qcow2"


# libvirt 9.0's vol-dumpxml of a qcow2 image, as it reports the image's layout
QCOW2_VOLUME = """<volume type='file'><name>db-1-vda.qcow2</name>
  <capacity unit='bytes'>268435456</capacity>
  <target><path>/srv/a1/local/db-1-vda.qcow2</path><format type='qcow2'/>
    <compat>1.1</compat><clusterSize unit='B'>131072</clusterSize><features/></target>
</volume>"""


def test_a_copied_qcow2_volume_keeps_its_compat_level_and_cluster_size():
    layout = volume_layout(QCOW2_VOLUME)
    assert layout == VolumeLayout("1.1", 131072)
    target = ET.fromstring(volume_xml("db-1-vda.qcow2", 1, "qcow2", layout)).find("target")
    assert target.findtext("compat") == "1.1"
    size = target.find("clusterSize")
    assert (size.get("unit"), size.text) == ("B", "131072")
    assert volume_layout("<volume><target><format type='raw'/></target></volume>") == \
        VolumeLayout()
    assert volume_layout("<volume><target><clusterSize unit='KiB'>64</clusterSize>"
                         "</target></volume>").cluster_size == 65536
    # A raw copy stays raw: no qcow2 layout in its definition.
    raw = ET.fromstring(volume_xml("a.raw", 1, "raw", layout)).find("target")
    assert raw.find("compat") is None and raw.find("clusterSize") is None


def test_volume_xml_escapes_name():
    root = ET.fromstring(volume_xml("a&b <c>.raw", 1, "raw"))
    assert root.findtext("name") == "a&b <c>.raw"


def test_block_copy_dest_xml():
    root = ET.fromstring(block_copy_dest_xml("/srv/lab-b1/fast/web-1-vda.qcow2", "qcow2"))
    assert (root.tag, root.get("type")) == ("disk", "file")
    assert root.find("driver").get("type") == "qcow2"
    assert root.find("source").attrib == {"file": "/srv/lab-b1/fast/web-1-vda.qcow2"}


def test_parse_pool():
    pool = parse_pool("<pool type='netfs'><name>shared</name><source><host name='nfs'/>"
                      "</source><target><path>/srv/nfs/shared</path></target></pool>")
    assert (pool.type, pool.path) == ("netfs", "/srv/nfs/shared")
    assert parse_pool("<pool/>") == type(pool)("", "")


# ---- metadata element -----------------------------------------------------------------------
def test_metadata_round_trip():
    meta = VmMetadata(home_server="lab-a2", folder="/Web & <Mail>")
    text = render_metadata(meta)
    assert ET.fromstring(text).tag == f"{{{NAMESPACE}}}vm"
    assert parse_metadata(text) == meta
    assert parse_metadata(render_metadata(VmMetadata())) == VmMetadata()


@pytest.mark.parametrize("text", [None, "", "<not xml", "<vm/>"])
def test_metadata_parse_tolerates_junk(text):
    assert parse_metadata(text) == VmMetadata()


def test_a_copy_gets_its_name_its_disks_and_no_uuid_nor_mac():
    xml = DOMAIN.replace("</devices>", "<interface type='network'>"
                         "<mac address='52:54:00:aa:bb:cc'/><source network='default'/>"
                         "<model type='virtio'/></interface></devices>")
    meta = VmMetadata(home_server="lab-b1", folder="/Web/Front")
    out = copy_domain(xml, "web-2", {"vda": "/srv/b1/web-2-vda.qcow2"}, meta)
    root = ET.fromstring(out)
    assert root.findtext("name") == "web-2"
    assert root.find("uuid") is None
    nic = root.find("./devices/interface")
    assert nic is not None and nic.find("mac") is None
    assert nic.find("source").get("network") == "default"  # the NIC itself stays
    dx = parse_domain(out)
    paths = {d.dev: d.path for d in dx.disks}
    assert paths["vda"] == "/srv/b1/web-2-vda.qcow2"
    assert paths["vdb"] == "/srv/lab-a1/local/web-1-vdb.img"  # (only vda was asked for)
    assert dx.metadata.home_server == "lab-b1" and dx.metadata.folder == "/Web/Front"


def test_a_volume_on_a_backing_file_says_so():
    assert volume_backing("<volume><name>a</name><backingStore><path>/base.qcow2</path>"
                          "<format type='qcow2'/></backingStore></volume>") == "/base.qcow2"
    assert volume_backing("<volume><name>a</name></volume>") is None


@pytest.mark.parametrize(("cpu", "kept"), [
    ("<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model>"
     "<feature policy='require' name='lahf_lm'/></cpu>", True),
    ("<cpu mode='host-model' check='partial'><model>Skylake-Client</model></cpu>", True),
    ("<cpu mode='host-model' check='partial'/>", False),  # a halted VM's: nothing to ask yet
    ("<cpu mode='host-passthrough'/>", False),
    # libvirt does not check it either: QEMU drops what the host lacks
    ("<cpu mode='custom' match='exact' check='none'><model>qemu64</model></cpu>", False),
    ("<cpu mode='custom' match='exact' check='full'><model>qemu64</model></cpu>", True),
    ("", False),
])
def test_the_cpu_a_destination_is_asked_about(cpu, kept):
    d = parse_domain(f"<domain type='kvm'><name>v</name><uuid>u</uuid><memory>1024</memory>"
                     f"<os><type arch='x86_64' machine='pc'>hvm</type></os>{cpu}"
                     "<devices/></domain>")
    assert d.arch == "x86_64"
    if kept:
        assert d.cpu.startswith("<cpu ") and "<model" in d.cpu and d.cpu.endswith("</cpu>")
    else:
        assert d.cpu == ""


def test_disks_named_by_path_or_by_pool_and_volume_are_both_referenced() -> None:
    xml = """<domain><devices>
      <disk type='file'><source file='/srv/a.qcow2'><backingStore type='file'>
        <source file='/srv/base.qcow2'/></backingStore></source></disk>
      <disk type='volume'><source pool='default' volume='b.qcow2'/></disk>
      <disk type='volume' device='cdrom'><source pool='isos' volume='d.iso'/></disk>
    </devices></domain>"""
    assert referenced_paths(xml) == {"/srv/a.qcow2", "/srv/base.qcow2"}
    assert referenced_volumes(xml) == {("default", "b.qcow2"), ("isos", "d.iso")}
