"""Measured boot catches a UKI that Secure Boot accepts but we did not build.

Each test changes the UKI on a copy of the raw image and re-signs it with our
db key, as an attacker holding that key could. The firmware boots it; the
agent's early stage must find that PCR 11 matches no policy signed with the
PCR signing key, report the boot as failed, and still bring the API up.
"""

import pytest

from appliance_vm import ApplianceVM
from tampering import make_tampered_image

BOOT_TIMEOUT_S = 600


@pytest.mark.parametrize("mode", ["cmdline", "initrd"])
def test_resigned_uki_fails_policy(artefacts, tmp_path, mode):
    tampered = make_tampered_image(artefacts, tmp_path, mode)
    vm = ApplianceVM(tampered, artefacts["ovmf_vars"], tmp_path / "vm")
    vm.start()
    try:
        vm.wait_for_api(BOOT_TIMEOUT_S)
        report = vm.get_json("/api/boot/measurements")
        console = vm.console_text()
    finally:
        vm.stop()

    checks = {check["name"]: check for check in report["checks"]}
    policy = checks["pcr11_signed_policy"]
    assert policy["status"] == "failed", policy
    assert policy["mismatches"][0]["pcr"] == 11, policy
    assert report["verdict"] == "failed", report
    # The firmware log still describes this boot faithfully.
    assert checks["event_log"]["status"] == "passed", checks["event_log"]
    assert "appliance-agent early: measurements verdict=failed" in console
    if mode == "cmdline":
        assert "appliance.tampered=1" in console, "the tampered command line did not boot"
