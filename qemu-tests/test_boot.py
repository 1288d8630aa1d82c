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
# The initial admin token as serve prints it on the console.
TOKEN = re.compile(r"appliance_[0-9a-f]{64}")


def request(guest, method, path, headers=None, body=None):
    """Send one request to the guest's API; return (status, parsed JSON body)."""
    req = urllib.request.Request(guest.api + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


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
    assert {"is_vm", "hypervisor", "gpu_passthrough", "vm_gpu_enabled", "security_notice"} <= set(status)
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


def test_vm_status_reports_tpm_and_sizing(guest):
    status = guest.get_json("/api/vm/status")
    # swtpm is libtpms, which reports IBM's vendor id.
    assert status["tpm"]["manufacturer"] == "IBM"
    assert status["tpm"]["looks_virtual"] is True
    assert status["sizing"]["vcpus"] == guest.cpus
    assert any("vCPUs" in warning for warning in status["sizing"]["warnings"])
    assert status["hardening"]["clipboard_agents"] == []


def test_initial_admin_token_shown_once(guest):
    tokens = TOKEN.findall(guest.console_text())
    assert len(set(tokens)) == 1, f"expected one admin token on the console, found {len(set(tokens))}"


def test_auth_rules_over_forwarded_port(guest):
    token = TOKEN.search(guest.console_text()).group(0)
    bearer = {"Authorization": f"Bearer {token}"}

    assert request(guest, "GET", "/api/auth/csrf")[0] == 401
    assert request(guest, "GET", "/api/auth/csrf", {"Authorization": "Bearer appliance_" + "0" * 64})[0] == 401
    assert request(guest, "GET", "/api/health", {"Host": "rebind.example"})[0] == 403
    status, body = request(guest, "GET", "/api/auth/csrf", bearer)
    assert status == 200, body
    csrf = body["csrf_token"]

    toggle = json.dumps({"enabled": False}).encode()
    json_type = {"Content-Type": "application/json"}
    assert request(guest, "POST", "/api/vm/gpu", {**bearer, **json_type}, toggle)[0] == 403
    assert request(guest, "POST", "/api/vm/gpu",
                   {**bearer, **json_type, "X-CSRF-Token": csrf, "Origin": "http://evil.example"}, toggle)[0] == 403
    status, body = request(guest, "POST", "/api/vm/gpu", {**bearer, **json_type, "X-CSRF-Token": csrf},
                           b'{"enabled": "yes"}')
    assert status == 400, body
    assert body["error"]["field"] == "enabled", body


def test_gpu_enabled_through_api(guest):
    token = TOKEN.search(guest.console_text()).group(0)
    bearer = {"Authorization": f"Bearer {token}"}
    csrf = request(guest, "GET", "/api/auth/csrf", bearer)[1]["csrf_token"]

    status, body = request(guest, "POST", "/api/vm/gpu",
                           {**bearer, "X-CSRF-Token": csrf, "Content-Type": "application/json"},
                           json.dumps({"enabled": True}).encode())

    assert status == 200, body
    assert body["vm_gpu_enabled"] is True
    assert body["gpu_security_notice"]["level"] == "warning"
    assert guest.get_json("/api/vm/status")["vm_gpu_enabled"] is True


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

    # An inference token, made through the admin API with the console's admin token.
    admin = {"Authorization": f"Bearer {TOKEN.search(guest.console_text()).group(0)}"}
    csrf = request(guest, "GET", "/api/auth/csrf", admin)[1]["csrf_token"]
    status, created = request(guest, "POST", "/api/auth/tokens",
                              {**admin, "X-CSRF-Token": csrf, "Content-Type": "application/json"},
                              json.dumps({"name": "qemu-test", "scope": "inference"}).encode())
    assert status == 201, created
    api_key = created["token"]

    body = json.dumps({
        "model": "tiny", "max_tokens": 8, "seed": 1,
        "messages": [{"role": "user", "content": "Say hello."}],
    }).encode()
    headers = {"Content-Type": "application/json"}
    status, _ = request(guest, "POST", "/v1/chat/completions", headers, body)
    assert status == 401, "the inference API needs a token"
    status, _ = request(guest, "POST", "/v1/chat/completions", {**headers, **admin}, body)
    assert status == 403, "an admin token is not an inference token"
    completion_request = urllib.request.Request(
        f"{guest.api}/v1/chat/completions", data=body,
        headers={**headers, "Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(completion_request, timeout=120) as response:
        completion = json.loads(response.read())

    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"], completion
    assert completion["usage"]["completion_tokens"] == 8


def test_clean_poweroff(guest):
    guest.stop()
    assert not guest.killed, "QEMU had to be killed: the guest did not power off in time"
    assert "reboot: Power down" in guest.console_text()


def test_gpu_setting_survives_reboot(guest):
    """Boots the same disk and TPM again after the clean power-off."""
    first_console = guest.console_text()
    guest.fresh_disk = False
    guest.start()
    try:
        guest.wait_for_api(BOOT_TIMEOUT_S)
        assert guest.get_json("/api/vm/status")["vm_gpu_enabled"] is True
        # The token store persisted, so no new admin token was created.
        assert TOKEN.findall(guest.console_text()) == []
        old_token = TOKEN.search(first_console).group(0)
        status, _ = request(guest, "GET", "/api/auth/csrf", {"Authorization": f"Bearer {old_token}"})
        assert status == 200
    finally:
        guest.stop()
