"""Measured boot separates a UKI we signed from one that only Secure Boot accepts.

The tampering tests change the UKI on a copy of the raw image and re-sign it
with our db key, as an attacker holding that key could. The firmware boots
it. The agent's early stage must then find that PCR 11 matches no policy
signed with the PCR signing key and report the boot as failed, and the API
must still come up. The update test signs the new PCR 11 policy too, as a release would, and
expects a verified boot with nothing changed on the machine.
"""

import pytest

from appliance_vm import ApplianceVM
from tampering import make_tampered_image

BOOT_TIMEOUT_S = 600


def boot_and_report(artefacts, tmp_path, mode):
    """Boot the image changed by MODE; return the report and the console."""
    image = make_tampered_image(artefacts, tmp_path, mode)
    vm = ApplianceVM(image, artefacts["ovmf_vars"], tmp_path / "vm")
    vm.start()
    try:
        vm.wait_for_api(BOOT_TIMEOUT_S)
        return vm.get_json("/api/boot/measurements"), vm.console_text()
    finally:
        vm.stop()


@pytest.mark.parametrize("mode", ["cmdline", "initrd"])
def test_resigned_uki_fails_policy(artefacts, tmp_path, mode):
    report, console = boot_and_report(artefacts, tmp_path, mode)

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


def test_signed_update_verifies(artefacts, tmp_path):
    report, console = boot_and_report(artefacts, tmp_path, "update")

    checks = {check["name"]: check for check in report["checks"]}
    assert checks["pcr11_signed_policy"]["status"] == "passed", checks["pcr11_signed_policy"]
    assert report["verdict"] == "verified", report
    assert "appliance.tampered=1" in console, "the updated command line did not boot"
