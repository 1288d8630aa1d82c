"""Shared set-up of the QEMU boot tests: paths to the built artefacts."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path.insert(0, str(HERE))

IMAGE_DIR = TOP / "build/image"
SPICE_IMAGE_DIR = TOP / "build/image-spice-test"
OVMF_VARS = TOP / "build/ovmf/vars.fd"
# The Makefile exports KEYS when it is set to another folder.
KEYS = (TOP / os.environ.get("KEYS", "keys")).resolve()


@pytest.fixture(scope="session")
def artefacts():
    """Return the built image paths; fail with the command to run if missing."""
    needed = [IMAGE_DIR / "appliance.qcow2", IMAGE_DIR / "appliance.raw", OVMF_VARS]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        pytest.fail(f"missing build outputs {missing}; run `make image` first")
    return {"qcow2": needed[0], "raw": needed[1], "ovmf_vars": OVMF_VARS, "keys": KEYS}



@pytest.fixture(scope="session")
def spice_artefacts():
    """Return the spice-vdagent test image; fail with the command to run if missing."""
    needed = [SPICE_IMAGE_DIR / "appliance.qcow2", OVMF_VARS]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        pytest.fail(f"missing build outputs {missing}; run `make image-spice-test` first")
    return {"qcow2": needed[0], "ovmf_vars": OVMF_VARS}
