#!/usr/bin/python3
"""Make a tampered copy of the appliance disk for the Secure Boot tests.

Runs inside the tools tree (pefile, mtools, sbsigntool, openssl):

    tamper_uki.py flip-byte   RAW_IN RAW_OUT WORKDIR
    tamper_uki.py foreign-key RAW_IN RAW_OUT WORKDIR
    tamper_uki.py cmdline     RAW_IN RAW_OUT WORKDIR KEYS_DIR
    tamper_uki.py initrd      RAW_IN RAW_OUT WORKDIR KEYS_DIR
    tamper_uki.py update      RAW_IN RAW_OUT WORKDIR KEYS_DIR

flip-byte changes one byte inside the UKI's .linux section and leaves the
signature as it was. foreign-key strips our signature and signs the UKI with
a freshly generated key that the firmware's db does not hold.

cmdline and initrd model an attacker who has our db key but not the PCR
signing key. They change the kernel command line, or append bytes to the
initrd, and re-sign the UKI with the db key in KEYS_DIR. The firmware then
boots it, and only the signed PCR 11 policy can tell.

update models a release we built: the command line changes as in cmdline,
and the PCR 11 policy is signed again with the PCR signing key in KEYS_DIR,
so the new UKI must verify without any change on the machine.
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


def section_bytes(uki, name):
    pe = pefile.PE(str(uki), fast_load=True)
    section = next(s for s in pe.sections if s.Name.rstrip(b"\0") == name)
    data = section.get_data()[:section.Misc_VirtualSize]
    pe.close()
    return data


def replace_section(uki, name, content):
    """Rewrite section NAME with CONTENT, which must fit its raw size."""
    pe = pefile.PE(str(uki))
    section = next(s for s in pe.sections if s.Name.rstrip(b"\0") == name)
    if len(content) > section.SizeOfRawData:
        sys.exit(f"tamper_uki: new {name.decode()} does not fit in {section.SizeOfRawData} bytes")
    offset = section.PointerToRawData
    section.Misc_VirtualSize = len(content)
    data = bytearray(pe.write())
    pe.close()
    data[offset:offset + section.SizeOfRawData] = content.ljust(section.SizeOfRawData, b"\0")
    uki.write_bytes(bytes(data))


def grow_section(uki, name, extra):
    """Append EXTRA to section NAME inside its file-alignment slack, so no
    other section moves."""
    pe = pefile.PE(str(uki))
    section = next((s for s in pe.sections if s.Name.rstrip(b"\0") == name), None)
    if section is None:
        sys.exit(f"tamper_uki: {uki} has no {name.decode()} section")
    used = section.Misc_VirtualSize
    if used + len(extra) > section.SizeOfRawData:
        sys.exit(f"tamper_uki: {name.decode()} has {section.SizeOfRawData - used} bytes of slack, "
                 f"need {len(extra)}")
    offset = section.PointerToRawData + used
    section.Misc_VirtualSize = used + len(extra)
    data = bytearray(pe.write())
    pe.close()
    data[offset:offset + len(extra)] = extra
    uki.write_bytes(bytes(data))


# systemd-measure's option for each section it measures.
MEASURE_OPTIONS = {
    b".linux": "--linux", b".osrel": "--osrel", b".cmdline": "--cmdline",
    b".initrd": "--initrd", b".ucode": "--ucode", b".splash": "--splash",
    b".dtb": "--dtb", b".uname": "--uname", b".sbat": "--sbat", b".pcrpkey": "--pcrpkey",
}


def sign_pcr_policy(uki, keys, workdir):
    """Replace .pcrsig with a policy that systemd-measure signs for UKI's
    current sections, as the image build does."""
    pe = pefile.PE(str(uki), fast_load=True)
    options = []
    for section in pe.sections:
        name = section.Name.rstrip(b"\0")
        if name in MEASURE_OPTIONS:
            path = workdir / ("section" + name.decode())
            path.write_bytes(section.get_data()[:section.Misc_VirtualSize])
            options.append(f"{MEASURE_OPTIONS[name]}={path}")
    pe.close()
    signature = subprocess.run(
        ["/usr/lib/systemd/systemd-measure", "sign", *options, "--bank=sha256", "--json=short",
         f"--private-key={Path(keys) / 'pcr-signing.key'}"],
        check=True, capture_output=True).stdout
    replace_section(uki, b".pcrsig", signature)


def sign_with_db_key(uki, keys):
    """Sign an unsigned UKI with our db key, as the image build does."""
    signed = uki.with_suffix(".signed")
    subprocess.run(["sbsign", "--key", Path(keys) / "db.key", "--cert", Path(keys) / "db.crt",
                    "--output", signed, uki], check=True, capture_output=True)
    shutil.move(signed, uki)


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
    mode, raw_in, raw_out, workdir = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    keys = sys.argv[5] if len(sys.argv) > 5 else None
    copy_image(raw_in, raw_out)
    name = find_uki(raw_out)
    uki = workdir / "uki.efi"
    subprocess.run(["mcopy", "-o", "-i", mtools_image(raw_out), name, uki], check=True)
    if mode == "flip-byte":
        flip_byte(uki)
    elif mode == "foreign-key":
        sign_with_foreign_key(uki, workdir)
    elif mode in ("cmdline", "initrd", "update") and keys is None:
        sys.exit(f"tamper_uki: {mode} needs the KEYS_DIR that holds db.key and db.crt")
    elif mode in ("cmdline", "update"):
        subprocess.run(["sbattach", "--remove", uki], check=True, capture_output=True)
        # The added parameter has a dot, so the kernel treats it as an
        # unknown module option and ignores it. The terminator (NUL or
        # newline) stays as the build wrote it.
        original = section_bytes(uki, b".cmdline")
        cmdline = original.rstrip(b"\0\n")
        terminator = original[len(cmdline):]
        replace_section(uki, b".cmdline", cmdline + b" appliance.tampered=1" + terminator)
        if mode == "update":
            sign_pcr_policy(uki, keys, workdir)
        sign_with_db_key(uki, keys)
    elif mode == "initrd":
        subprocess.run(["sbattach", "--remove", uki], check=True, capture_output=True)
        # The kernel skips zero padding between initramfs archives, so the
        # boot still works while the measured content differs.
        grow_section(uki, b".initrd", b"\0" * 4)
        sign_with_db_key(uki, keys)
    else:
        sys.exit(f"tamper_uki: unknown mode {mode!r}; use flip-byte or foreign-key")
    subprocess.run(["mcopy", "-o", "-i", mtools_image(raw_out), uki, name], check=True)
    print(f"tamper_uki: {mode}: rewrote {name} in {raw_out}")


if __name__ == "__main__":
    main()
