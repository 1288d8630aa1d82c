#!/usr/bin/python3
"""Check a freshly built image before anyone boots or ships it.

Fails the build when a clipboard agent package slipped in (even as a
dependency), when the agent is missing, or when the partition layout is not
ESP + root + empty vault.
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

# Each of these gives the hypervisor a channel to the guest's clipboard.
FORBIDDEN_PACKAGES = {"spice-vdagent", "open-vm-tools-desktop", "virtualbox-guest-x11"}
REQUIRED_PACKAGES = {"appliance-agent", "systemd-boot-efi", "tpm2-tools", "cryptsetup"}
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_X86_64_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
VAULT_TYPE = "B69992A8-67EC-4659-A0E0-E8F5BE18F8BC"


def fail(message):
    sys.exit(f"check-image: {message}")


# Test variants (mkosi profiles) and the clipboard agent package each one
# must contain: the boot tests show that the appliance disables it.
TEST_VARIANTS = {"spice-test": "spice-vdagent"}


def check_packages(manifest_path, variant):
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        fail(f"cannot read the package manifest {manifest_path}: {err}; rebuild with ManifestFormat=json")
    installed = {p["name"] for p in manifest.get("packages", [])}
    allowed = {TEST_VARIANTS[variant]} if variant else set()
    present = sorted((FORBIDDEN_PACKAGES - allowed) & installed)
    if present:
        fail(f"clipboard agent packages in the image: {', '.join(present)}; find what pulls them in and exclude it")
    if variant and TEST_VARIANTS[variant] not in installed:
        fail(f"the {variant} test image lacks {TEST_VARIANTS[variant]}; check mkosi.conf.d for its profile")
    missing = sorted(REQUIRED_PACKAGES - installed)
    if missing:
        fail(f"packages missing from the image: {', '.join(missing)}")


def read_partitions(raw_path):
    """Return [{"NR":..,"TYPE":..,"NAME":..}] as partx lists them."""
    output = subprocess.check_output(["partx", "-P", "-o", "NR,TYPE,NAME", str(raw_path)], text=True)
    return [dict(shlex.split(field)[0].split("=", 1) for field in line.split()) for line in output.splitlines()]


def check_partitions(raw_path):
    parts = read_partitions(raw_path)
    types = [p["TYPE"].upper() for p in parts]
    expected = [ESP_TYPE, ROOT_X86_64_TYPE, VAULT_TYPE]
    if types != expected:
        fail(f"partition types of {raw_path} are {types}, expected {expected} (ESP, root, vault)")
    if parts[2]["NAME"] != "appliance-vault":
        fail(f"vault partition label is {parts[2]['NAME']!r}, expected 'appliance-vault'")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_dir", nargs="?", default="build/image", type=Path)
    parser.add_argument("--test-variant", choices=sorted(TEST_VARIANTS),
                        help="check a test image built with this mkosi profile, which must contain its clipboard agent")
    args = parser.parse_args()
    check_packages(args.image_dir / "appliance.manifest", args.test_variant)
    check_partitions(args.image_dir / "appliance.raw")
    print(f"check-image: {args.image_dir}/appliance.raw passed (packages, partition layout)")


if __name__ == "__main__":
    main()
