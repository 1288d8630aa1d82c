"""Boot the signed appliance image under QEMU with OVMF Secure Boot and swtpm.

One guest boots for the whole module; each test checks one property of that
boot from the console log or through the forwarded API port.
"""

import json
import os
import re
import time
import urllib.error
import urllib.request

import pytest

from appliance_vm import ApplianceVM

BOOT_TIMEOUT_S = 600
# Seconds for importing and loading the tiny model once the API responds, under TCG.
MODEL_TIMEOUT_S = 180
# The Makefile passes a tar archive with the tiny model.
MODELS_DISK = os.environ.get("MODELS_DISK")


@pytest.fixture(scope="module")
def guest(artefacts, tmp_path_factory):
    vm = ApplianceVM(artefacts["qcow2"], artefacts["ovmf_vars"], tmp_path_factory.mktemp("boot"),
                     models_disk=MODELS_DISK)
    vm.start()
    print(f"\naccelerator: {vm.accel}")
    try:
        seconds = vm.wait_for_api(BOOT_TIMEOUT_S)
        print(f"API answered {seconds:.1f} s after QEMU started ({vm.accel})")
        yield vm
    finally:
        vm.stop()


def test_early_stage_runs_in_initrd(guest):
    console = guest.console_text()
    early = console.find("appliance-agent early: platform is_vm=true")
    switch_root = console.find("initrd-switch-root.service")
    assert early >= 0, "the early stage's platform line is missing from the console"
    assert switch_root >= 0, "no switch-root on the console"
    assert early < switch_root, "the early stage ran after switch-root, not in the initrd"


def test_secure_boot_enforcing_in_guest(guest):
    console = guest.console_text()
    assert "EFI stub: UEFI Secure Boot is enabled." in console
    assert "appliance-agent early: boot secure_boot=enforcing" in console
    assert guest.get_json("/api/boot/status")["secure_boot"] == "enforcing"


def test_tpm_device_in_guest(guest):
    tpm = guest.get_json("/api/boot/status")["tpm"]
    assert tpm["present"] is True
    assert tpm["version"] == "2"
    assert tpm["device"] == "/dev/tpmrm0"
    assert re.search(r"appliance-agent early: boot .*tpm=2\.0", guest.console_text())


def test_vm_status_from_host(guest):
    status = guest.get_json("/api/vm/status")
    expected_hypervisor = "kvm" if guest.accel == "kvm" else "qemu"
    assert set(status) == {"is_vm", "hypervisor", "gpu_passthrough", "vm_gpu_enabled", "security_notice"}
    assert status["is_vm"] is True
    assert status["hypervisor"] == expected_hypervisor
    assert status["gpu_passthrough"] is False
    assert status["vm_gpu_enabled"] is False
    notice = status["security_notice"]
    assert notice["level"] == "warning"
    assert notice["title"] == f"Running in a Virtual Machine ({expected_hypervisor})"
    assert any("read all VM memory" in line for line in notice["details"])
    assert any("snapshot" in line.lower() for line in notice["details"])


def test_measurements_verified(guest):
    report = guest.get_json("/api/boot/measurements")
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["event_log"]["status"] == "passed", checks["event_log"]
    assert checks["pcr11_signed_policy"]["status"] == "passed", checks["pcr11_signed_policy"]
    assert checks["pcr15_unused"]["status"] == "passed", checks["pcr15_unused"]
    assert report["verdict"] == "verified", report
    assert "appliance-agent early: measurements verdict=verified" in guest.console_text()


def wait_for_health(guest, timeout):
    """Poll /api/health until it returns 200, and return that body."""
    started = time.monotonic()
    deadline = started + timeout
    body = None
    while time.monotonic() < deadline:
        try:
            health = guest.get_json("/api/health")
            print(f"\nmodel ready {time.monotonic() - started:.1f} s after the first health check")
            return health
        except urllib.error.HTTPError as err:
            body = err.read().decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(2)
    pytest.fail(f"/api/health not 200 within {timeout} s; last answer {body}")


@pytest.mark.skipif(MODELS_DISK is None, reason="MODELS_DISK (a tar of GGUF files) is not set; `make qemu-test` sets it")
def test_chat_completion_through_forwarded_port(guest):
    health = wait_for_health(guest, MODEL_TIMEOUT_S)
    assert health == {"status": "ok", "model": "tiny"}

    body = json.dumps({
        "model": "tiny", "max_tokens": 8, "seed": 1,
        "messages": [{"role": "user", "content": "Say hello."}],
    }).encode()
    request = urllib.request.Request(f"{guest.api}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        completion = json.loads(response.read())

    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"], completion
    assert completion["usage"]["completion_tokens"] == 8


def test_clean_poweroff(guest):
    guest.stop()
    assert not guest.killed, "QEMU had to be killed: the guest did not power off in time"
    assert "reboot: Power down" in guest.console_text()
