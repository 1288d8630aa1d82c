#!/bin/bash
# Package the agent binaries as two .deb files for mkosi to install:
# appliance-agent-early (initrd: the early-boot unit, a binary built without
# llama.cpp) and appliance-agent (root file system: the API service with
# llama.cpp, its config and network setup).
set -euo pipefail

usage="usage: build-packages.sh MAIN_BINARY EARLY_BINARY OUTPUT_DIR VERSION"
main_binary=${1:?$usage}
early_binary=${2:?$usage}
output=${3:?$usage}
version=${4:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The initrd is loaded and measured on every boot and runs no model, so
# llama.cpp must stay out of it.
if grep -q -a llama_decode "$early_binary"; then
    echo "build-packages: $early_binary contains llama.cpp (llama_decode); build it without the llama feature" >&2
    exit 1
fi
if ! grep -q -a llama_decode "$main_binary"; then
    echo "build-packages: $main_binary lacks llama.cpp (no llama_decode); build it with --features llama" >&2
    exit 1
fi

tss_depends="libc6, libgcc-s1, libssl3t64, libcryptsetup12, libtss2-esys-3.0.2-0t64, libtss2-mu-4.0.1-0t64, libtss2-sys1t64, libtss2-tctildr0t64, libtss2-tcti-device0t64"

make_package() {
    local name=$1 binary=$2 depends=$3 description=$4 root="$work/$1"
    mkdir -p "$root/DEBIAN" "$root/usr/bin"
    install -m 0755 "$binary" "$root/usr/bin/appliance-agent"
    cat > "$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: amd64
Section: admin
Priority: optional
Maintainer: Secure AI Appliance developers <appliance@localhost>
Depends: $depends
Description: $description
CONTROL
}

make_package appliance-agent-early "$early_binary" "$tss_depends" \
    "Secure AI Appliance early-boot agent (initrd)"
units="$work/appliance-agent-early/usr/lib/systemd/system"
mkdir -p "$units/initrd.target.wants"
install -m 0644 "$here/agent-package/early/appliance-early.service" "$units/"
ln -s ../appliance-early.service "$units/initrd.target.wants/appliance-early.service"

# llama.cpp is C++ and runs its threads with OpenMP.
make_package appliance-agent "$main_binary" "$tss_depends, libstdc++6, libgomp1" \
    "Secure AI Appliance agent and API service"
root="$work/appliance-agent"
units="$root/usr/lib/systemd/system"
mkdir -p "$units/multi-user.target.wants" "$root/etc/appliance" "$root/usr/lib/systemd/network"
install -m 0644 "$here/agent-package/main/appliance-agent.service" "$units/"
ln -s ../appliance-agent.service "$units/multi-user.target.wants/appliance-agent.service"
install -m 0644 "$here/agent-package/main/appliance.yaml" "$root/etc/appliance/appliance.yaml"
# Mount point of the vault. Until the vault is mounted there, models land in
# this folder on the root partition.
install -d -m 0700 "$root/var/lib/appliance/vault"
echo /etc/appliance/appliance.yaml > "$root/DEBIAN/conffiles"
install -m 0644 "$here/agent-package/main/20-wired.network" "$root/usr/lib/systemd/network/"
mkdir -p "$root/usr/lib/systemd/system-preset"
install -m 0644 "$here/agent-package/main/20-appliance.preset" "$root/usr/lib/systemd/system-preset/"

mkdir -p "$output"
rm -f "$output"/appliance-agent*.deb
for name in appliance-agent-early appliance-agent; do
    dpkg-deb --root-owner-group -Zgzip -b "$work/$name" "$output/${name}_${version}_amd64.deb" >/dev/null
done
