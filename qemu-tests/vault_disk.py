"""Reading the vault partition of a guest's disk from the host.

The boot tests use this to check, with the stock cryptsetup tool, that a recovery key
shown on the console opens the vault, and to move a vault onto a disk with a tampered UKI.
"""

import contextlib
import struct
import subprocess
import uuid
from pathlib import Path

SECTOR = 512
VAULT_TYPE = uuid.UUID("b69992a8-67ec-4659-a0e0-e8f5be18f8bc")
ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")


def partitions(raw):
    """Return (type UUID, first byte, size in bytes, name) for each GPT entry of RAW."""
    with open(raw, "rb") as disk:
        disk.seek(SECTOR)
        header = disk.read(92)
        if header[:8] != b"EFI PART":
            raise ValueError(f"{raw} has no GPT header at LBA 1")
        entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
        disk.seek(entries_lba * SECTOR)
        table = disk.read(count * entry_size)
    found = []
    for index in range(count):
        entry = table[index * entry_size:(index + 1) * entry_size]
        type_uuid = uuid.UUID(bytes_le=entry[:16])
        if type_uuid.int == 0:
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        name = entry[56:128].decode("utf-16-le").rstrip("\0")
        found.append((type_uuid, first * SECTOR, (last - first + 1) * SECTOR, name))
    return found


def partition_range(raw, type_uuid):
    """Return (offset, size) of the partition of TYPE_UUID in RAW."""
    for found, offset, size, _ in partitions(raw):
        if found == type_uuid:
            return offset, size
    raise ValueError(f"{raw} has no partition of type {type_uuid}")


def vault_range(raw):
    """Return (offset, size) of the vault partition in RAW."""
    return partition_range(raw, VAULT_TYPE)


def to_raw(disk, out):
    """Write the guest's disk (qcow2 overlay or raw) as a sparse raw file OUT."""
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(out)], check=True)
    return Path(out)


def copy_partition(source_raw, target_raw, type_uuid):
    """Copy the partition of TYPE_UUID in SOURCE_RAW into the same place in TARGET_RAW."""
    offset, size = partition_range(source_raw, type_uuid)
    if partition_range(target_raw, type_uuid) != (offset, size):
        raise ValueError("the two disks lay out that partition differently")
    chunk = 4 * 1024 * 1024
    with open(source_raw, "rb") as source, open(target_raw, "r+b") as target:
        source.seek(offset)
        target.seek(offset)
        remaining = size
        while remaining:
            data = source.read(min(chunk, remaining))
            target.write(data)
            remaining -= len(data)


@contextlib.contextmanager
def vault_loop_device(raw):
    """Attach the vault partition of RAW as a read-only loop device."""
    offset, size = vault_range(raw)
    device = subprocess.run(
        ["losetup", "--find", "--show", "--read-only", "--offset", str(offset),
         "--sizelimit", str(size), str(raw)],
        check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def cryptsetup_opens(device, passphrase):
    """Return whether stock `cryptsetup open --test-passphrase` accepts PASSPHRASE."""
    result = subprocess.run(
        ["cryptsetup", "open", "--test-passphrase", "--key-file", "-", device],
        input=passphrase.encode(), capture_output=True)
    return result.returncode == 0


def luks_dump(device):
    """Return `cryptsetup luksDump --dump-json-metadata` of DEVICE as text."""
    return subprocess.run(["cryptsetup", "luksDump", "--dump-json-metadata", device],
                          check=True, capture_output=True, text=True).stdout
