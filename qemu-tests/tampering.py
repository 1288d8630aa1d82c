"""Tampered copies of the built image for the Secure Boot and measured-boot tests."""

import subprocess
from pathlib import Path

from appliance_vm import sandbox

HERE = Path(__file__).resolve().parent


def make_tampered_image(artefacts, workdir, mode):
    """Copy the raw image with its UKI changed by tamper_uki.py MODE."""
    tampered = workdir / "tampered.raw"
    script = HERE / "tamper_uki.py"
    subprocess.run(sandbox("/usr/bin/python3", str(script), mode, str(artefacts["raw"]),
                           str(tampered), str(workdir), str(artefacts["keys"])), check=True)
    return tampered
