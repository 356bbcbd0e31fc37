"""The Migrate VM wizard's Networking page (XenCenter's cross-pool step): one row per NIC,
a drop-down of the home server's networks and bridges, the same name pre-selected where the
server has it, Next held until every NIC has somewhere to go; the choice reaches the
migration request and the review."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QWizard

from tests.conftest import until
from tests.ui.fakes import FakeEngine, change
from xencenter_lite.core.commands import migrate_refusal
from xencenter_lite.core.model import Nic, VirtualNetwork
from xencenter_lite.ui.migrate_menu import migrate_or_open_wizard
from xencenter_lite.ui.wizard import (
    DESTINATION,
    HOME_SERVER,
    NETWORKING,
    REVIEW,
    STORAGE,
    STORAGE_NETWORK,
    MigrateWizard,
)

WEB = ("lab-a1", "uuid-web-1")
LAN = Nic("52:54:00:00:00:01", "network", "lan", "virtio")
BR0 = Nic("52:54:00:00:00:02", "bridge", "br0", "e1000")


def _networks(fake: FakeEngine) -> None:
    """The pool's members have 'lan' and br0; lab-b1 has 'office', 'lab' and br8."""
    for name in ("lab-a1", "lab-a2"):
        fake.fleet.server(name, virtual_networks=(VirtualNetwork("lan", True, "virbr1"),),
                          bridges=frozenset({"br0", "virbr1"}))
    fake.fleet.server("lab-b1", virtual_networks=(VirtualNetwork("office", True, "br7"),
                                                  VirtualNetwork("lab", True, "virbr2")),
                      bridges=frozenset({"br7", "br8", "virbr2"}))
    change(fake.fleet, "web-1", nics=(LAN, BR0))
    fake.push()


def _open(qtbot: Any, run: Any, fake: FakeEngine, destination: str) -> MigrateWizard:
    wizard = MigrateWizard(fake, [WEB], destination)
    qtbot.addWidget(wizard)
    wizard.show()
    run(until(lambda: wizard.page(DESTINATION).isComplete(), timeout=10))
    return wizard


def test_across_pools_each_nic_is_mapped_before_the_migration_can_start(qtbot, run, fake):
    _networks(fake)
    wizard = _open(qtbot, run, fake, "lab-b1")
    # lab-b1 lacks both of web-1's networks: not a reason to rule it out, a page to fill.
    assert wizard.page(DESTINATION).combo.currentText().startswith("lab-b1")
    assert wizard.path() == [DESTINATION, STORAGE, NETWORKING, STORAGE_NETWORK, REVIEW]
    wizard.next()
    wizard.next()
    assert wizard.currentId() == NETWORKING
    page = wizard.page(NETWORKING)
    assert page.table.rowCount() == 2
    assert [page.table.item(r, 2).text() for r in range(2)] == ["network 'lan'",
                                                                "bridge 'br0'"]
    lan = page.nic_combos[(WEB, LAN.mac)]
    br = page.nic_combos[(WEB, BR0.mac)]
    assert [lan.itemText(i) for i in range(lan.count())] == [
        "(choose: 'lab-b1' has no network 'lan'; choose one it has)", "network 'lab'",
        "network 'office'", "bridge 'br7'", "bridge 'br8'", "bridge 'virbr2'"]
    assert lan.currentIndex() == 0 and not page.isComplete()
    next_button = wizard.button(QWizard.WizardButton.NextButton)
    assert not next_button.isEnabled()
    # A bridge of the same name that nothing there is seen to use is offered (libvirt
    # cannot safely list a server's bridges); the others it uses too.
    assert br.itemText(0) == "bridge 'br0' (the same name; not seen in use there)"
    assert br.currentIndex() == 0
    lan.setCurrentIndex(lan.findData("office"))
    assert page.isComplete() and next_button.isEnabled()
    br.setCurrentIndex(br.findData("bridge:br8"))
    assert page.isComplete()

    (request,) = wizard.requests()
    assert request.nics == {LAN.mac: "office", BR0.mac: "bridge:br8"}
    wizard.next()
    assert wizard.currentId() == STORAGE_NETWORK
    wizard.next()
    review = wizard.page(REVIEW)
    run(until(lambda: wizard.button(QWizard.WizardButton.FinishButton).isEnabled()))
    item = review.summary.topLevelItem(0)
    rows = {item.child(i).text(0): item.child(i).text(1) for i in range(item.childCount())}
    assert rows[f"NIC {LAN.mac}"] == "network 'office'"
    assert rows[f"NIC {BR0.mac}"] == "bridge 'br8'"
    wizard.button(QWizard.WizardButton.FinishButton).click()
    assert fake.migrated[-1][0].nics == {LAN.mac: "office", BR0.mac: "bridge:br8"}


def test_inside_the_pool_nics_that_find_their_names_skip_the_page(qtbot, run, fake):
    _networks(fake)
    wizard = _open(qtbot, run, fake, "lab-a2")
    wizard.next()
    assert wizard.currentId() == HOME_SERVER
    assert wizard.path() == [DESTINATION, HOME_SERVER, STORAGE_NETWORK, REVIEW]
    (request,) = wizard.requests()
    assert request.nics == {}  # the same names there


def test_the_same_name_is_preselected_where_the_destination_has_it(qtbot, run, fake):
    _networks(fake)
    fake.fleet.server("lab-b1", virtual_networks=(VirtualNetwork("lan", True, "br7"),),
                      bridges=frozenset({"br7"}))
    fake.push()
    wizard = _open(qtbot, run, fake, "lab-b1")
    assert NETWORKING in wizard.path()  # out of its pool: XenCenter's cross-pool step
    wizard.next()
    wizard.next()
    page = wizard.page(NETWORKING)
    assert page.nic_combos[(WEB, LAN.mac)].currentData() == "lan"
    assert page.nic_combos[(WEB, BR0.mac)].currentData() == "bridge:br0"
    assert page.isComplete()


def test_a_drop_on_a_server_missing_a_nics_network_opens_the_wizard(qtbot, run, fake):
    _networks(fake)
    fake.fleet.server("lab-a2", virtual_networks=(), bridges=frozenset())
    fake.push()
    snap = fake.snapshot()
    assert migrate_refusal(snap, [WEB], "lab-a2", set()) is None  # the wizard can fix it
    opened = migrate_or_open_wizard(fake, [WEB], "lab-a2", None)
    qtbot.addWidget(opened)
    assert isinstance(opened, MigrateWizard)  # not the plain confirmation
    assert fake.migrated == []
