"""The firmware and systemd-boot reject UKIs that our db key did not sign.

Each test tampers with the UKI on a copy of the raw image, boots it, and
expects the rejection on the console and no sign of the agent.
"""

import pytest

from appliance_vm import ApplianceVM
from tampering import make_tampered_image

REJECTION_TIMEOUT_S = 240


def boot_tampered(artefacts, tmp_path, mode):
    tampered = make_tampered_image(artefacts, tmp_path, mode)
    vm = ApplianceVM(tampered, artefacts["ovmf_vars"], tmp_path / "vm")
    vm.start()
    try:
        rejected = vm.wait_for_console_re(r"Access [Dd]enied", REJECTION_TIMEOUT_S)
        return rejected, vm.console_text()
    finally:
        vm.stop(timeout=5)


@pytest.mark.parametrize("mode", ["flip-byte", "foreign-key"])
def test_unsigned_uki_rejected(artefacts, tmp_path, mode):
    rejected, console = boot_tampered(artefacts, tmp_path, mode)
    assert rejected, f"no 'Access denied' on the console after {REJECTION_TIMEOUT_S} s:\n{console[-2000:]}"
    assert "Linux version" not in console, "the kernel started from a tampered UKI"
    assert "appliance-agent" not in console
