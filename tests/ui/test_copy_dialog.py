"""Copy VM on the real lab: the dialog's choices, what stops a copy, and a real copy."""

from __future__ import annotations

import contextlib
import subprocess

from tests.conftest import until
from tests.labtools import remove_vm, virsh, vm_named, where_defined
from tests.ui.vm_placement import place
from xencenter_lite.core.jobs import JobState
from xencenter_lite.ui.copy_dialog import CopyVmDialog


def entries(dialog: CopyVmDialog) -> dict[str, tuple[str, bool]]:
    combo = dialog.sr
    return {combo.itemData(i): (combo.itemText(i), combo.model().item(i).isEnabled())
            for i in range(combo.count())}


def test_a_halted_vm_is_copied_where_the_operator_says(qtbot, run, engine):
    build = vm_named(engine, "build-1")
    app = place(engine, run, "app-1", "lab-b1", sr="Local storage")
    uris = {n: s.uri for n, s in engine.snapshot().servers.items()}
    dialog = CopyVmDialog(engine, build.key)
    qtbot.addWidget(dialog)
    assert dialog.name.text() == "Copy of build-1"
    assert dialog.destination() == build.server
    assert dialog.chosen_sr() == build.hard_disks[0].sr  # next to the original
    assert dialog.copy_button.isEnabled()

    dialog.server.setCurrentIndex(dialog.server.findData("lab-b1"))
    shown = entries(dialog)
    assert not shown["Small storage"][1] and "Not enough space" in shown["Small storage"][0]
    assert dialog.chosen_sr() == "Local storage"  # lab-b1's default SR
    dialog.name.setText(app.name)
    assert not dialog.copy_button.isEnabled()
    assert "already has a VM named 'app-1'" in dialog.problem.text()
    dialog.name.setText("cp-ui")
    dialog.sr.setCurrentIndex(dialog.sr.findData("Fast storage"))
    assert dialog.copy_button.isEnabled() and not dialog.problem.isVisible()
    try:
        dialog.copy_button.click()
        job = dialog.job
        assert job is not None
        run(engine.wait([job]), 120)
        assert job.state is JobState.DONE, (job.error, job.messages)
        assert where_defined(uris, "cp-ui") == [("lab-b1", "shut off")]
        assert vm_named(engine, "cp-ui").hard_disks[0].sr == "Fast storage"
    finally:
        remove_vm(uris["lab-b1"], "cp-ui")
        run(engine.refresh())


def test_a_running_vm_cannot_be_copied_and_the_dialog_says_why(qtbot, run, engine, tmp_path):
    from tests.labtools import bare_domain_xml

    uri = engine.snapshot().servers["lab-a2"].uri
    virsh(uri, "define", str(bare_domain_xml(tmp_path, "cp-run")))
    try:
        virsh(uri, "start", "cp-run")
        run(until(lambda: any(v.is_running for v in engine.snapshot().vms_named("cp-run"))))
        dialog = CopyVmDialog(engine, vm_named(engine, "cp-run").key)
        qtbot.addWidget(dialog)
        assert not dialog.copy_button.isEnabled()
        assert "Shut it down, then copy it" in dialog.problem.text()
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            virsh(uri, "destroy", "cp-run")
        virsh(uri, "undefine", "cp-run")
        run(engine.refresh())
