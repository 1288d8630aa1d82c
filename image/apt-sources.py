#!/usr/bin/python3
"""Write apt sources for Debian trixie that use this host's own mirrors.

mkosi would otherwise write its default sources, including a debian-debug
suite that mirrors often do not carry. Taking the URIs from the host's apt
configuration keeps the build working behind whatever mirror the host uses.
"""

import glob
import os
import re
import sys

TARGET_SUITE = "trixie"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def host_codename():
    with open("/etc/os-release", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return ""


def parse_deb822(path):
    """Yield (uris, suites) for each 'Types: deb' stanza of a .sources file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            yield fields.get("uris", []), fields.get("suites", [])


def parse_one_line(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = [w for w in words[1:] if not w.startswith("[")]
            if len(words) >= 2:
                yield [words[0]], [words[1]]


def host_mirrors():
    """Return (archive_uri, security_uri) of the host's Debian sources."""
    codename = host_codename()
    entries = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        entries.extend(parse_deb822(path))
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(path):
            entries.extend(parse_one_line(path))

    archive = security = None
    for uris, suites in entries:
        for suite in suites:
            if not uris:
                continue
            if suite in (f"{codename}-security", f"{codename}/updates") and security is None:
                security = uris[0]
            elif suite == codename and archive is None:
                archive = uris[0]
    return archive, security


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: apt-sources.py OUTPUT_FILE")
    archive, security = host_mirrors()
    if archive is None:
        sys.exit(
            "error: no Debian archive found in /etc/apt/sources.list or "
            "/etc/apt/sources.list.d for this host's release; add one so the "
            "image build knows which mirror to use"
        )
    stanzas = [(archive, [TARGET_SUITE, f"{TARGET_SUITE}-updates"])]
    if security is not None:
        stanzas.append((security, [f"{TARGET_SUITE}-security"]))

    os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        for uri, suites in stanzas:
            out.write(
                f"Types: deb\nURIs: {uri}\nSuites: {' '.join(suites)}\n"
                f"Components: main\nSigned-By: {KEYRING}\n\n"
            )


if __name__ == "__main__":
    main()
