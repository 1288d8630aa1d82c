"""The vault under QEMU: created on first boot, opened by the TPM on the next, closed on a
boot we did not sign and then opened with the recovery key; creation interrupted by a
power cut at each step ends in a complete vault and never in a recovery key that fails.

Each test boots the real image with a fresh swtpm; TCG boots take about a minute each.
"""

import json
import re
import urllib.request

import pytest

from appliance_vm import ApplianceVM
from tampering import make_tampered_image
import vault_disk

BOOT_TIMEOUT_S = 600
RECOVERY_KEY = re.compile(r"\b(?:[cbdefghijklnrtuv]{8}-){7}[cbdefghijklnrtuv]{8}\b")
# The initial admin token as serve prints it on the console.
ADMIN_TOKEN = re.compile(r"appliance_[0-9a-f]{64}")


def recovery_keys(console):
    return RECOVERY_KEY.findall(console)


def boot(vm):
    vm.start()
    vm.wait_for_api(BOOT_TIMEOUT_S)
    return vm.get_json("/api/vault/status")


def request(vm, method, path, headers, body=None):
    req = urllib.request.Request(vm.api + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post_json(vm, token, path, body):
    """POST as the admin: bearer token, a fresh CSRF token and a JSON body."""
    bearer = {"Authorization": f"Bearer {token}"}
    status, reply = request(vm, "GET", "/api/auth/csrf", bearer)
    assert status == 200, reply
    headers = {**bearer, "X-CSRF-Token": reply["csrf_token"], "Content-Type": "application/json"}
    return request(vm, "POST", path, headers, json.dumps(body).encode())


@pytest.fixture(scope="module")
def two_boots(artefacts, tmp_path_factory):
    """Boot a fresh disk twice with the same TPM; return both statuses and consoles."""
    state = tmp_path_factory.mktemp("vault") / "vm"
    first = ApplianceVM(artefacts["qcow2"], artefacts["ovmf_vars"], state)
    try:
        status1 = boot(first)
        console1 = first.console_text()
    finally:
        first.stop()
    second = ApplianceVM(artefacts["qcow2"], artefacts["ovmf_vars"], state, fresh_disk=False)
    try:
        status2 = boot(second)
        console2 = second.console_text()
    finally:
        second.stop()
    return {"state": state, "status": [status1, status2], "console": [console1, console2],
            "disk": state / "disk.qcow2"}


def test_first_boot_creates_vault(two_boots):
    status, console = two_boots["status"][0], two_boots["console"][0]
    assert status["state"] == "open", status
    assert status["unlocked_by"] == "tpm", status
    assert status["enrollment"] == "created", status
    assert status["mount_point"] == "/var/lib/appliance/vault", status
    assert status["vault_id"], status
    assert status["pcr15_measurement"], status
    assert "appliance-agent early: vault created" in console
    assert "appliance-agent early: vault open by=tpm" in console
    assert len(set(recovery_keys(console))) == 1, "one recovery key shown on the console"


def test_second_boot_opens_unattended(two_boots):
    first, second = two_boots["status"]
    assert second["state"] == "open", second
    assert second["unlocked_by"] == "tpm", second
    assert second["enrollment"] is None, second
    # The identifier file written on the first boot is still there.
    assert second["vault_id"] == first["vault_id"]
    assert recovery_keys(two_boots["console"][1]) == [], "no recovery key on later boots"


def test_stock_cryptsetup_recovery_key(two_boots, tmp_path):
    key = recovery_keys(two_boots["console"][0])[0]
    raw = vault_disk.to_raw(two_boots["disk"], tmp_path / "disk.raw")
    with vault_disk.vault_loop_device(raw) as device:
        assert vault_disk.cryptsetup_opens(device, key)
        assert not vault_disk.cryptsetup_opens(device, key.replace(key[0], "v" if key[0] != "v" else "c", 1))
        metadata = json.loads(vault_disk.luks_dump(device))
    types = sorted(token["type"] for token in metadata["tokens"].values())
    assert types == ["systemd-recovery", "systemd-tpm2"], metadata["tokens"]
    for keyslot in metadata["keyslots"].values():
        assert keyslot["kdf"]["type"] == "pbkdf2", keyslot


def test_tampered_uki_vault_closed(two_boots, artefacts, tmp_path):
    key = recovery_keys(two_boots["console"][0])[0]
    token = ADMIN_TOKEN.search(two_boots["console"][0]).group(0)
    # The machine's own disk, with only the ESP's UKI changed and re-signed for Secure Boot.
    tampered = make_tampered_image(artefacts, tmp_path, "cmdline")
    disk = vault_disk.to_raw(two_boots["disk"], tmp_path / "disk.raw")
    vault_disk.copy_partition(tampered, disk, vault_disk.ESP_TYPE)
    tampered.unlink()
    vm = ApplianceVM(artefacts["qcow2"], artefacts["ovmf_vars"], two_boots["state"],
                     fresh_disk=False, disk=disk)
    try:
        status = boot(vm)
        assert status["state"] == "locked", status
        assert "recovery key" in status["reason"], status
        assert "appliance.tampered=1" in vm.console_text(), "the tampered command line did not boot"

        # While the vault is closed, the admin token is checked against its copy outside it.
        assert request(vm, "POST", "/api/vault/unlock", {"Content-Type": "application/json"},
                       json.dumps({"recovery_key": key}).encode())[0] == 401
        code, reply = post_json(vm, token, "/api/vault/unlock", {"recovery_key": "cbcbcbcb"})
        assert code == 400, reply
        code, reply = post_json(vm, token, "/api/vault/unlock", {"recovery_key": key})
        assert code == 200, reply
        assert reply["state"] == "open", reply
        assert reply["unlocked_by"] == "recovery-key", reply
        assert reply["vault_id"] == two_boots["status"][0]["vault_id"], reply

        code, reply = post_json(vm, token, "/api/vault/lock", {})
        assert code == 200, reply
        assert vm.get_json("/api/vault/status")["state"] == "locked"
        # The token still works with the vault closed again, so it can be reopened.
        code, reply = post_json(vm, token, "/api/vault/unlock", {"recovery_key": key})
        assert code == 200, reply
    finally:
        vm.stop()


@pytest.mark.parametrize("cut", ["after-keyslots", "after-recovery-key-shown"])
def test_power_cut_during_creation(artefacts, tmp_path, cut):
    state = tmp_path / "vm"
    vm = ApplianceVM(artefacts["qcow2"], artefacts["ovmf_vars"], state,
                     credentials=[f"appliance.vault-test-cut={cut}"])
    vm.start()
    try:
        assert vm.wait_for_console(f"appliance-agent early: vault paused {cut}", BOOT_TIMEOUT_S), \
            f"the early stage never reached {cut}; see {vm.console}"
        shown_before = recovery_keys(vm.console_text())
    finally:
        vm.kill()

    again = ApplianceVM(artefacts["qcow2"], artefacts["ovmf_vars"], state, fresh_disk=False)
    try:
        status = boot(again)
        shown_after = recovery_keys(again.console_text())
    finally:
        again.stop()

    assert status["state"] == "open", status
    assert status["unlocked_by"] == "tpm", status
    if cut == "after-recovery-key-shown":
        assert status["enrollment"] == "resumed", status
        assert shown_after == shown_before, "the same key is shown again"
    else:
        assert shown_before == [], "no key is shown before the vault is complete"
        assert status["enrollment"] == "restarted", status
    assert len(set(shown_after)) == 1

    raw = vault_disk.to_raw(again.disk, tmp_path / "disk.raw")
    with vault_disk.vault_loop_device(raw) as device:
        for key in set(shown_before + shown_after):
            assert vault_disk.cryptsetup_opens(device, key), "a key shown on the console does not open the vault"
