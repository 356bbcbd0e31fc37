"""The Migrate VM wizard: where the VMs go, where their disks go, over which network.

Like XenCenter's CrossPoolMigrateWizard it only builds one MigrationRequest per VM; the
engine checks and runs them. Every check runs in the background (engine.precheck) and the
pages show "waiting…" or "Checking…" meanwhile, so the Qt loop never blocks.
"""

from xencenter_lite.ui.wizard.common import (
    ADD_SERVER,
    DESTINATION,
    HOME_SERVER,
    HOW,
    MANAGEMENT_WARNING,
    NETWORKING,
    REVIEW,
    SAVED_HOW,
    STEP_NAMES,
    STORAGE,
    STORAGE_NETWORK,
    Entry,
    Target,
    VmKey,
    WizardPage,
    current_enabled,
    enabled_at,
    fill_combo,
    grid_table,
    request_key,
    targets_of,
)
from xencenter_lite.ui.wizard.destination import DestinationPage
from xencenter_lite.ui.wizard.home_server import HomeServerPage
from xencenter_lite.ui.wizard.migrate_wizard import MigrateWizard
from xencenter_lite.ui.wizard.networking import NetworkingPage
from xencenter_lite.ui.wizard.review import ReviewPage
from xencenter_lite.ui.wizard.storage import StoragePage
from xencenter_lite.ui.wizard.storage_network import StorageNetworkPage

__all__ = [
    "ADD_SERVER", "DESTINATION", "HOME_SERVER", "HOW", "MANAGEMENT_WARNING", "NETWORKING",
    "REVIEW", "SAVED_HOW", "STEP_NAMES", "STORAGE", "STORAGE_NETWORK", "DestinationPage",
    "Entry", "HomeServerPage", "MigrateWizard", "NetworkingPage", "ReviewPage",
    "StorageNetworkPage", "StoragePage", "Target", "VmKey", "WizardPage", "current_enabled",
    "enabled_at", "fill_combo", "grid_table", "request_key", "targets_of",
]
