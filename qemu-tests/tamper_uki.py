#!/usr/bin/python3
"""Make a tampered copy of the appliance disk for the Secure Boot tests.

Runs inside the tools tree (pefile, mtools, sbsigntool, openssl):

    tamper_uki.py flip-byte   RAW_IN RAW_OUT
    tamper_uki.py foreign-key RAW_IN RAW_OUT WORKDIR

flip-byte changes one byte inside the UKI's .linux section and leaves the
signature as it was. foreign-key strips our signature and signs the UKI with
a freshly generated key that the firmware's db does not hold.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pefile

# The ESP is the first partition and starts at 1 MiB in every image mkosi
# builds with our repart definitions.
ESP_OFFSET = 1024 * 1024


def mtools_image(raw):
    return f"{raw}@@{ESP_OFFSET}"


def find_uki(raw):
    listing = subprocess.check_output(["mdir", "-b", "-i", mtools_image(raw), "::/EFI/Linux/"], text=True)
    ukis = [line.strip() for line in listing.splitlines() if line.strip().lower().endswith(".efi")]
    if len(ukis) != 1:
        sys.exit(f"tamper_uki: expected one UKI in /EFI/Linux of {raw}, found {ukis}")
    return ukis[0]


def copy_image(raw_in, raw_out):
    subprocess.run(["cp", "--sparse=always", raw_in, raw_out], check=True)


def flip_byte(uki):
    pe = pefile.PE(str(uki), fast_load=True)
    linux = next((s for s in pe.sections if s.Name.rstrip(b"\0") == b".linux"), None)
    if linux is None:
        sys.exit(f"tamper_uki: {uki} has no .linux section")
    offset = linux.PointerToRawData + linux.SizeOfRawData // 2
    pe.close()
    data = bytearray(uki.read_bytes())
    data[offset] ^= 0x01
    uki.write_bytes(bytes(data))


def sign_with_foreign_key(uki, workdir):
    key, cert = workdir / "foreign.key", workdir / "foreign.crt"
    subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                    "-days", "1", "-subj", "/CN=Unknown signer (test)/",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    unsigned = workdir / "unsigned.efi"
    subprocess.run(["sbattach", "--remove", uki], check=True, capture_output=True)
    shutil.move(uki, unsigned)
    subprocess.run(["sbsign", "--key", key, "--cert", cert, "--output", uki, unsigned],
                   check=True, capture_output=True)


def main():
    mode, raw_in, raw_out = sys.argv[1], sys.argv[2], sys.argv[3]
    workdir = Path(sys.argv[4] if len(sys.argv) > 4 else Path(raw_out).parent)
    copy_image(raw_in, raw_out)
    name = find_uki(raw_out)
    uki = workdir / "uki.efi"
    subprocess.run(["mcopy", "-o", "-i", mtools_image(raw_out), name, uki], check=True)
    if mode == "flip-byte":
        flip_byte(uki)
    elif mode == "foreign-key":
        sign_with_foreign_key(uki, workdir)
    else:
        sys.exit(f"tamper_uki: unknown mode {mode!r}; use flip-byte or foreign-key")
    subprocess.run(["mcopy", "-o", "-i", mtools_image(raw_out), uki, name], check=True)
    print(f"tamper_uki: {mode}: rewrote {name} in {raw_out}")


if __name__ == "__main__":
    main()
