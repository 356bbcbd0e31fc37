"""The Migrate VM wizard on the real lab: its pages, their entries and reasons, a real run."""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import replace
from typing import Any

import pytest
import shiboken6
from PySide6.QtWidgets import QComboBox, QWizard

from tests.conftest import until
from tests.labtools import bare_domain_xml, virsh, vm_named
from tests.ui.vm_placement import place
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.policy import POST_COPY_RISK, MigrationSettings, OnTimeout, Policy
from xencenter_lite.ui.wizard import (
    DESTINATION,
    HOME_SERVER,
    MANAGEMENT_WARNING,
    REVIEW,
    STORAGE,
    STORAGE_NETWORK,
    MigrateWizard,
)

pytestmark = pytest.mark.lab


def texts(combo: QComboBox) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def entry(combo: QComboBox, prefix: str) -> int:
    found = [i for i, t in enumerate(texts(combo)) if t.startswith(prefix)]
    assert len(found) == 1, (prefix, texts(combo))
    return found[0]


def enabled(combo: QComboBox, i: int) -> bool:
    return combo.model().item(i).isEnabled()


def open_wizard(qtbot: Any, run: Any, engine: Any, name: str,
                destination: str | None = None) -> MigrateWizard:
    wizard = MigrateWizard(engine, [vm_named(engine, name).key], destination)
    qtbot.addWidget(wizard)
    wizard.show()
    combo = wizard.page(DESTINATION).combo
    run(until(lambda: not any("waiting" in t for t in texts(combo))))
    return wizard


def go_next(wizard: MigrateWizard, expected: int) -> None:
    wizard.next()
    assert wizard.currentId() == expected, wizard.currentPage().objectName()


def test_destination_entries_wait_for_their_checks_then_say_why(qtbot, run, engine):
    place(engine, run, "app-1", "lab-b1", sr="Local storage")
    wizard = MigrateWizard(engine, [vm_named(engine, "app-1").key])
    qtbot.addWidget(wizard)
    wizard.show()
    combo = wizard.page(DESTINATION).combo
    assert any(t.endswith("(waiting…)") for t in texts(combo)), texts(combo)
    run(until(lambda: not any("waiting" in t for t in texts(combo))))

    assert texts(combo) == ["Production", "lab-b1 - Current server",
                            "Add a pool or standalone server…"]
    assert not enabled(combo, 1) and enabled(combo, 0)
    assert combo.currentText() == "Production"  # the only usable one is pre-selected
    assert wizard.currentPage().objectName() == "destinationPage"
    assert wizard.currentPage().objectName() == "destinationPage"

    asked = []
    wizard.addServerRequested.connect(lambda: asked.append(True))
    combo.setCurrentIndex(2)
    assert asked == [True] and combo.currentText() == "Production"


def review_rows(wizard: MigrateWizard) -> dict[str, str]:
    top = wizard.page(REVIEW).summary.topLevelItem(0)
    return {top.child(i).text(0): top.child(i).text(1) for i in range(top.childCount())}


def test_a_halted_vm_moves_with_its_disks_and_says_how(qtbot, run, engine):
    build = vm_named(engine, "build-1")
    assert build.server == "lab-a2" and build.state.value == "halted"
    wizard = open_wizard(qtbot, run, engine, "build-1", destination="lab-b1")
    combo = wizard.page(DESTINATION).combo
    assert combo.currentText().startswith("lab-b1"), texts(combo)
    assert wizard.path() == [DESTINATION, STORAGE, STORAGE_NETWORK, REVIEW]
    go_next(wizard, STORAGE)
    go_next(wizard, STORAGE_NETWORK)
    go_next(wizard, REVIEW)
    review = wizard.page(REVIEW)
    finish = wizard.button(QWizard.WizardButton.FinishButton)
    run(until(finish.isEnabled))
    rows = review_rows(wizard)
    assert rows["Migration"].startswith("Halted: started paused (no guest code runs)")
    assert rows["Storage network"] == "storage" and not review.resume.isVisible()
    listed = [review.problems.item(i).text() for i in range(review.problems.count())]
    assert any("libvirt sends its disks straight to 'lab-b1'" in t for t in listed), listed


def test_a_paused_vm_is_offered_resume_on_the_destination(qtbot, run, engine, tmp_path):
    uri = engine.snapshot().servers["lab-a2"].uri
    virsh(uri, "define", str(bare_domain_xml(tmp_path, "nap-1")))
    try:
        virsh(uri, "start", "nap-1")
        virsh(uri, "suspend", "nap-1")
        run(until(lambda: any(v.state.value == "paused"
                              for v in engine.snapshot().vms_named("nap-1"))))
        wizard = open_wizard(qtbot, run, engine, "nap-1", destination="lab-b1")
        assert wizard.path() == [DESTINATION, STORAGE_NETWORK, REVIEW]
        go_next(wizard, STORAGE_NETWORK)
        go_next(wizard, REVIEW)
        review = wizard.page(REVIEW)
        assert review.resume.isVisible() and not review.resume.isChecked()
        assert review_rows(wizard)["After the migration"] == "Stays paused"
        review.resume.setChecked(True)
        assert review_rows(wizard)["After the migration"] == "Resumed"
        (request,) = wizard.requests()
        assert request.resume
        finish = wizard.button(QWizard.WizardButton.FinishButton)
        run(until(finish.isEnabled))
        finish.click()
        (job,) = wizard.jobs
        run(engine.wait([job]), 120)
        assert job.state is JobState.DONE, (job.error, job.messages)
        b1 = engine.snapshot().servers["lab-b1"].uri
        assert virsh(b1, "domstate", "nap-1").strip() == "running"
    finally:
        for server in ("lab-a2", "lab-b1"):
            u = engine.snapshot().servers[server].uri
            with contextlib.suppress(subprocess.CalledProcessError):
                virsh(u, "destroy", "nap-1")
            with contextlib.suppress(subprocess.CalledProcessError):
                virsh(u, "undefine", "nap-1")


def test_pool_destination_asks_for_the_home_server(qtbot, run, engine):
    place(engine, run, "db-1", "lab-a1", sr="Local storage")
    wizard = open_wizard(qtbot, run, engine, "db-1", destination="lab-a2")
    assert wizard.page(DESTINATION).combo.currentText() == "Production"
    go_next(wizard, HOME_SERVER)
    assert wizard.currentPage().objectName() == "homeServerPage"
    (home,) = wizard.page(HOME_SERVER).combos.values()
    assert texts(home)[0] == "lab-a1 - Current server" and not enabled(home, 0)
    assert home.currentText().startswith("lab-a2 (") and "free memory" in home.currentText()
    go_next(wizard, STORAGE)  # db-1's disks are on lab-a1's own Local storage
    # Opened for the pool itself (a VM dropped on the pool): the same pages, the member to
    # pick on the Home Server page.
    wizard = open_wizard(qtbot, run, engine, "db-1", destination="Production")
    assert wizard.page(DESTINATION).combo.currentText() == "Production"
    go_next(wizard, HOME_SERVER)
    (home,) = wizard.page(HOME_SERVER).combos.values()
    assert home.currentText().startswith("lab-a2 (")


def test_standalone_destination_skips_the_home_server_page(qtbot, run, engine):
    place(engine, run, "db-1", "lab-a1", sr="Local storage")
    wizard = open_wizard(qtbot, run, engine, "db-1", destination="lab-b1")
    assert wizard.path() == [DESTINATION, STORAGE, STORAGE_NETWORK, REVIEW]
    go_next(wizard, STORAGE)
    page = wizard.page(STORAGE)
    same = page.sr_combo
    assert same.currentText().startswith("Local storage, ")  # lab-b1's default SR
    assert same.currentText().endswith(" available")
    small = entry(same, "Small storage - Not enough space: ")
    assert not enabled(same, small)

    page.specific.setChecked(True)
    vda = page.disk_combos[(wizard.vm_keys[0], "vda")]
    assert texts(vda)[entry(vda, "Small storage")].startswith("Small storage - Not enough space")
    assert not enabled(vda, entry(vda, "Small storage"))
    assert enabled(vda, entry(vda, "Fast storage, "))


def _web_1_inside_the_pool(qtbot: Any, run: Any, engine: Any) -> tuple[MigrateWizard, str]:
    """The wizard moving web-1 (disk on the shared SR) to its pool's other member, on the
    Storage network page (the Storage page skipped); and that member."""
    web = vm_named(engine, "web-1")
    if web.server not in ("lab-a1", "lab-a2"):
        web = place(engine, run, "web-1", "lab-a1", sr="Shared storage")
    other = "lab-a2" if web.server == "lab-a1" else "lab-a1"
    wizard = open_wizard(qtbot, run, engine, "web-1", destination=other)
    go_next(wizard, HOME_SERVER)
    go_next(wizard, STORAGE_NETWORK)
    return wizard, other


def test_memory_only_move_inside_the_pool_skips_storage(qtbot, run, engine):
    wizard, other = _web_1_inside_the_pool(qtbot, run, engine)
    (request,) = wizard.requests()
    assert request.destination == other and request.sr is None and not request.disk_srs


def test_management_network_warning(qtbot, run, engine):
    place(engine, run, "db-1", "lab-a1", sr="Local storage")
    wizard = open_wizard(qtbot, run, engine, "db-1", destination="lab-b1")
    go_next(wizard, STORAGE)
    go_next(wizard, STORAGE_NETWORK)
    page = wizard.page(STORAGE_NETWORK)
    assert page.combo.currentData() == "storage" and not page.warning.isVisible()
    page.combo.setCurrentIndex(entry(page.combo, "management"))
    assert page.warning.isVisible() and page.warning.text() == MANAGEMENT_WARNING
    assert wizard.requests()[0].network == "management"


def test_migration_settings_choose_the_policy_and_show_the_post_copy_risk(qtbot, run, engine):
    wizard, _other = _web_1_inside_the_pool(qtbot, run, engine)
    page = wizard.page(STORAGE_NETWORK)
    # The inventory's defaults (none there: auto-converge, 300 ms), no risk shown.
    assert page.policy.currentData() is Policy.AUTO_CONVERGE
    assert page.downtime.value() == 300 and not page.risk.isVisible()
    assert "throttle the guest's vCPUs" in page.policy_summary.text()
    page.policy.setCurrentIndex(page.policy.findData(Policy.POST_COPY))
    assert page.risk.isVisible() and page.risk.text() == POST_COPY_RISK
    page.policy.setCurrentIndex(page.policy.findData(Policy.MINIMAL_DOWNTIME))
    assert not page.risk.isVisible()
    page.downtime.setValue(500)
    page.timeout_check.setChecked(True)
    page.timeout.setValue(90)
    page.on_timeout.setCurrentIndex(page.on_timeout.findData(OnTimeout.POST_COPY))
    assert page.risk.isVisible()  # post-copy may happen at the timeout
    page.on_timeout.setCurrentIndex(page.on_timeout.findData(OnTimeout.SUSPEND))
    (request,) = wizard.requests()
    assert request.settings == MigrationSettings(Policy.MINIMAL_DOWNTIME, 500, 90,
                                                 OnTimeout.SUSPEND)
    # Compression and several connections at once: said why, and Next is refused.
    page.compress.setChecked(True)
    page.parallel.setValue(4)
    assert page.settings_problem.isVisible() and "choose one" in page.settings_problem.text()
    assert not page.isComplete()
    page.parallel.setValue(1)
    assert page.isComplete()
    go_next(wizard, REVIEW)
    review = wizard.page(REVIEW)
    rows = {review.summary.topLevelItem(0).child(i).text(0):
            review.summary.topLevelItem(0).child(i).text(1)
            for i in range(review.summary.topLevelItem(0).childCount())}
    assert rows["Migration settings"] == ("policy minimal-downtime, max downtime 500 ms, "
                                          "timeout 90 s, then suspend, compression xbzrle")
    assert "Risk" not in rows


def test_a_server_that_disconnects_is_reported_on_the_next_page_change(
    qtbot, run, engine, monkeypatch
):
    place(engine, run, "db-1", "lab-a1", sr="Local storage")
    wizard = open_wizard(qtbot, run, engine, "db-1", destination="lab-b1")
    go_next(wizard, STORAGE)
    real = engine.snapshot()
    gone = replace(real.servers["lab-b1"], connected=False, error="connection lost")
    monkeypatch.setattr(engine, "snapshot",
                        lambda: replace(real, servers={**real.servers, "lab-b1": gone}))
    wizard.next()
    assert wizard.currentId() == STORAGE  # refused to go on
    problem = wizard.page(STORAGE).problem
    assert problem.isVisible()
    assert problem.text().startswith("'lab-b1' is no longer connected (connection lost)")


def test_review_disables_finish_while_a_check_fails(qtbot, run, engine):
    app = place(engine, run, "app-1", "lab-b1", sr="Local storage")
    wizard = open_wizard(qtbot, run, engine, "app-1", destination="lab-a1")
    for page in (HOME_SERVER, STORAGE, STORAGE_NETWORK):
        go_next(wizard, page)
    disk = app.disk("vda")
    assert disk is not None
    busy = engine.move_disk(app.key, "vda", "Fast storage" if disk.sr != "Fast storage"
                            else "Local storage", bandwidth_mib_s=1)
    try:
        go_next(wizard, REVIEW)
        review = wizard.page(REVIEW)
        assert review.status.text() == "Checking…"
        run(until(lambda: review.status.text() != "Checking…"))
        finish = wizard.button(QWizard.WizardButton.FinishButton)
        assert not finish.isEnabled()
        assert "resolve these problems" in review.status.text()
        listed = [review.problems.item(i).text() for i in range(review.problems.count())]
        assert any("already has a migration or disk move running" in t for t in listed), listed
    finally:
        run(engine.cancel(busy))
        run(engine.wait([busy]))


def test_full_run_with_an_sr_per_disk_rechecks_after_going_back(qtbot, run, engine):
    db = place(engine, run, "db-1", "lab-a1", sr="Local storage")
    wizard = open_wizard(qtbot, run, engine, "db-1", destination="lab-b1")
    go_next(wizard, STORAGE)
    storage = wizard.page(STORAGE)
    storage.specific.setChecked(True)
    combos = {dev: storage.disk_combos[(db.key, dev)] for dev in ("vda", "vdb")}
    for combo in combos.values():
        combo.setCurrentIndex(entry(combo, "Local storage, "))
    go_next(wizard, STORAGE_NETWORK)
    go_next(wizard, REVIEW)
    review = wizard.page(REVIEW)
    finish = wizard.button(QWizard.WizardButton.FinishButton)
    run(until(finish.isEnabled))
    assert "Estimated time: about" in review.status.text()

    wizard.back()
    wizard.back()
    assert wizard.currentId() == STORAGE
    combos["vdb"].setCurrentIndex(entry(combos["vdb"], "Fast storage, "))
    go_next(wizard, STORAGE_NETWORK)
    go_next(wizard, REVIEW)
    assert review.status.text() == "Checking…" and not finish.isEnabled()
    vm_item = review.summary.topLevelItem(0)
    rows = {vm_item.child(i).text(0): vm_item.child(i).text(1)
            for i in range(vm_item.childCount())}
    assert rows["Home server"] == "lab-b1" and rows["Storage network"] == "storage"
    assert [v for k, v in rows.items() if k.startswith("Disk ")] == ["Local storage",
                                                                     "Fast storage"]
    run(until(finish.isEnabled))
    finish.click()
    assert not wizard.isVisible()
    (job,) = wizard.jobs
    run(engine.wait([job]))
    assert job.state is JobState.DONE, (job.error, job.error_details)
    moved = vm_named(engine, "db-1")
    assert moved.server == "lab-b1"
    assert {d.dev: d.sr for d in moved.hard_disks} == {"vda": "Local storage",
                                                       "vdb": "Fast storage"}


def test_several_vms_get_one_request_each(qtbot, run, engine):
    keys = [vm_named(engine, n).key for n in ("web-1", "db-1")]
    on_b1 = [k for k in keys if k[0] == "lab-b1"]
    wizard = MigrateWizard(engine, keys, "lab-b1" if not on_b1 else "lab-a1")
    qtbot.addWidget(wizard)
    wizard.show()
    run(until(lambda: wizard.page(DESTINATION).isComplete(), timeout=10))
    assert wizard.page(DESTINATION).grid.topLevelItemCount() == 2
    while wizard.currentId() != STORAGE:
        wizard.next()
    assert len(wizard.page(STORAGE).disk_combos) == 3  # web-1's disk and db-1's two
    assert [r.vm for r in wizard.requests()] == keys


def test_open_shows_it_without_blocking_and_cancel_disposes_of_it(qtbot, run, engine):
    wizard = MigrateWizard(engine, [vm_named(engine, "web-1").key])
    wizard.open()
    assert wizard.isVisible() and not wizard.isModal()
    assert wizard.objectName() == "migrateWizard"
    wizard.reject()
    run(until(lambda: not shiboken6.isValid(wizard)))


def test_tls_is_offered_on_the_network_page_and_reaches_the_migration(qtbot, run, engine):
    web = place(engine, run, "web-1", "lab-a1")
    wizard = open_wizard(qtbot, run, engine, "web-1", destination="lab-a2")
    go_next(wizard, HOME_SERVER)
    go_next(wizard, STORAGE_NETWORK)
    page = wizard.page(STORAGE_NETWORK)
    assert not page.tls.isChecked() and wizard.requests()[0].tls is False
    page.tls.setChecked(True)
    assert wizard.requests()[0].tls is True
    go_next(wizard, REVIEW)
    review = wizard.page(REVIEW)
    vm_item = review.summary.topLevelItem(0)
    rows = {vm_item.child(i).text(0): vm_item.child(i).text(1)
            for i in range(vm_item.childCount())}
    assert rows["Encryption"] == "TLS"
    finish = wizard.button(QWizard.WizardButton.FinishButton)
    run(until(finish.isEnabled))
    finish.click()
    (job,) = wizard.jobs
    run(engine.wait([job]))
    # The test lab's servers have TLS certificates (tls = true): the move is encrypted
    # (tests/integration/test_transports.py looks at the wire), and it happens.
    assert job.state is JobState.DONE, (job.error, job.error_details)
    assert web.server == "lab-a1" and vm_named(engine, "web-1").server == "lab-a2"


def test_a_vm_deleted_while_the_wizard_is_open_is_reported_and_nothing_starts(
    qtbot, run, engine, tmp_path
):
    uri = engine.snapshot().servers["lab-a2"].uri
    virsh(uri, "define", str(bare_domain_xml(tmp_path, "gone-1")))
    try:
        virsh(uri, "start", "gone-1")
        run(until(lambda: any(v.is_running for v in engine.snapshot().vms_named("gone-1"))))
        jobs = len(engine.jobs)
        wizard = open_wizard(qtbot, run, engine, "gone-1", destination="lab-b1")
        key = wizard.vm_keys[0]
        while wizard.currentId() != REVIEW:
            wizard.next()
        finish = wizard.button(QWizard.WizardButton.FinishButton)
        run(until(finish.isEnabled))

        virsh(uri, "destroy", "gone-1")
        virsh(uri, "undefine", "gone-1")
        run(until(lambda: engine.snapshot().vm(key) is None))
        review = wizard.page(REVIEW)
        assert not finish.isEnabled()  # the result in hand is stale: checked again
        run(until(lambda: review.status.text() != "Checking…"))
        assert not finish.isEnabled()
        listed = [review.problems.item(i).text() for i in range(review.problems.count())]
        assert any("'gone-1' no longer exists" in t for t in listed), listed
        assert "cannot start" in review.status.text()
        assert not wizard.validateCurrentPage()  # Finish would refuse too

        wizard.back()  # and any page refuses to go on, saying why
        wizard.next()
        assert wizard.currentId() == STORAGE_NETWORK
        problem = wizard.page(STORAGE_NETWORK).problem
        assert problem.isVisible() and "'gone-1' no longer exists" in problem.text()
        assert wizard.jobs == [] and len(engine.jobs) == jobs
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            virsh(uri, "destroy", "gone-1")
        with contextlib.suppress(subprocess.CalledProcessError):
            virsh(uri, "undefine", "gone-1")


def test_placement_picks_the_destination_and_home_server_and_says_why(qtbot, run, engine):
    # web-1 on lab-a1, its disk on the pool's shared SR: the pool (lab-a2, no disk copy) and
    # lab-b1 (a copy) can both take it. The wizard starts on placement's pick and says why,
    # and the Home Server page picks that member, with its stars.
    place(engine, run, "web-1", "lab-a1")
    wizard = open_wizard(qtbot, run, engine, "web-1")
    page = wizard.page(DESTINATION)
    assert enabled(page.combo, entry(page.combo, "lab-b1"))  # a real choice of two
    run(until(lambda: page.combo.currentIndex() >= 0))
    assert page.combo.currentText() == "Production"
    advice = page.recommendation.text()
    assert page.recommendation.isVisibleTo(wizard)
    assert advice.startswith("Recommended: Production. 'web-1' → lab-a2 (★"), advice
    assert "no disk copy" in advice
    go_next(wizard, HOME_SERVER)
    (home,) = wizard.page(HOME_SERVER).combos.values()
    assert home.currentText().startswith("lab-a2 (") and "★" in home.currentText()
    assert "no disk copy" in home.model().item(home.currentIndex()).toolTip()
