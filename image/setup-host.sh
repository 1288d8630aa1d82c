#!/bin/bash
# Install what this host needs to build and boot the appliance image.
# Idempotent: a second run installs nothing and downloads nothing.
set -euo pipefail

CACHE=${APPLIANCE_CACHE:-/var/cache/appliance}
mkdir -p "$CACHE"
MKOSI_VERSION=25.3
HOST_PACKAGES=(
    # mkosi's own needs on the host; everything else comes from the tools tree.
    apt dpkg debian-archive-keyring python3 uidmap
    # Signing keys, image conversion and the tests' tooling.
    openssl qemu-utils python3-pytest python3-venv curl
    # Rust crates that bind C libraries; llama.cpp is built with cmake.
    pkg-config libclang-dev libtss2-dev libcryptsetup-dev cmake g++
    # LUKS2 tools: the tests check that stock cryptsetup opens the vault.
    cryptsetup-bin
    # A software TPM for the TPM tests that run on the host.
    swtpm swtpm-tools
)

log() { printf 'setup-host: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host: must run as root (it installs packages and builds disk images)" >&2
    exit 1
fi

# Rust comes from rustup, not apt: Debian 12's rustc is too old for the crates.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "setup-host: cargo not found; install Rust 1.95 with rustup (https://rustup.rs), then run make again" >&2
    exit 1
fi

missing=()
for pkg in "${HOST_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing host packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$CACHE/apt-install.log" 2>&1 \
        || { echo "setup-host: apt-get install failed; see $CACHE/apt-install.log" >&2; exit 1; }
fi

# mkosi 25 comes from trixie. It is unpacked rather than installed, because
# its package depends on a systemd newer than bookworm's. It runs on
# bookworm's Python and needs nothing else from the host.
mkosi_dir="$CACHE/mkosi-$MKOSI_VERSION"
if [ ! -f "$mkosi_dir/usr/lib/python3/dist-packages/mkosi/__init__.py" ]; then
    log "fetching mkosi $MKOSI_VERSION from Debian trixie"
    apt_dir="$CACHE/apt-trixie"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    /usr/bin/python3 "$(dirname "$0")/apt-sources.py" "$apt_dir/sources.list.d/debian.sources"
    apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
              -o "APT::Sandbox::User=root")
    apt-get -qq "${apt_opts[@]}" update
    version=$(apt-cache "${apt_opts[@]}" policy mkosi | awk '/Candidate:/ {print $2}')
    case "$version" in
        "$MKOSI_VERSION"*) ;;
        *) echo "setup-host: trixie offers mkosi '$version', expected $MKOSI_VERSION; update MKOSI_VERSION in $0 after testing it" >&2
           exit 1 ;;
    esac
    (cd "$apt_dir" && apt-get -qq "${apt_opts[@]}" download "mkosi=$version")
    rm -rf "$mkosi_dir.tmp"
    dpkg-deb -x "$apt_dir"/mkosi_"${version}"_all.deb "$mkosi_dir.tmp"
    mv "$mkosi_dir.tmp" "$mkosi_dir"
fi
log "mkosi $MKOSI_VERSION ready in $mkosi_dir"

# Python tools (the tiny test model's writer, the OpenAI client for the API
# tests) in a venv of their own, rebuilt whenever the pinned list changes.
venv="$CACHE/venv"
requirements="$(cd "$(dirname "$0")" && pwd)/requirements.txt"
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$venv/requirements.sha256" 2>/dev/null)" != "$wanted" ]; then
    log "installing the Python tools into $venv"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >"$CACHE/pip-install.log" 2>&1 \
        || { echo "setup-host: pip install failed; see $CACHE/pip-install.log" >&2; exit 1; }
    # Written last, so an interrupted install is redone on the next run.
    echo "$wanted" > "$venv/requirements.sha256"
fi
log "Python tools ready in $venv"
