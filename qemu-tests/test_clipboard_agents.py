"""Boot the test image that has spice-vdagent installed and check that the
appliance disabled it: the initrd masked its units on the root file
system, so the daemon never started, and the status API reports it.
"""

import pytest

from appliance_vm import ApplianceVM

BOOT_TIMEOUT_S = 600
CONSOLE_PREFIX = "appliance-agent early: clipboard "


@pytest.fixture(scope="module")
def spice_guest(spice_artefacts, tmp_path_factory):
    vm = ApplianceVM(spice_artefacts["qcow2"], spice_artefacts["ovmf_vars"], tmp_path_factory.mktemp("spice"))
    vm.start()
    try:
        seconds = vm.wait_for_api(BOOT_TIMEOUT_S)
        print(f"\nAPI answered {seconds:.1f} s after QEMU started ({vm.accel})")
        yield vm
    finally:
        vm.stop()


def test_initrd_masks_spice_units(spice_guest):
    console = spice_guest.console_text()
    for unit in ("spice-vdagentd.socket", "spice-vdagentd.service"):
        assert f"{CONSOLE_PREFIX}stop and mask {unit} done" in console, unit
    assert f"{CONSOLE_PREFIX}mask user unit spice-vdagent.service for every user done" in console
    for entry in ("/etc/xdg/autostart/spice-vdagent.desktop",
                  "/usr/share/gdm/autostart/LoginWindow/spice-vdagent.desktop"):
        assert f"{CONSOLE_PREFIX}set Hidden=true in {entry} done" in console, entry
    switch_root = console.find("initrd-switch-root.service")
    assert 0 <= console.find(CONSOLE_PREFIX) < switch_root, "the units must be masked before switch-root"


def test_status_reports_disabled_agent(spice_guest):
    hardening = spice_guest.get_json("/api/vm/status")["hardening"]
    done = {action["action"] for action in hardening["actions"] if action["ok"]}
    assert "stop and mask spice-vdagentd.socket" in done, hardening
    assert "stop and mask spice-vdagentd.service" in done, hardening
    agents = {finding["agent"] for finding in hardening["clipboard_agents"]}
    assert "spice-vdagentd" in agents, hardening
    # Masked before switch-root, the daemon never ran, so serve found no
    # process of it to end.
    assert not any(finding.get("pid") for finding in hardening["clipboard_agents"]), hardening
    assert not any(not action["ok"] for action in hardening["actions"]), hardening
