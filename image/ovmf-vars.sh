#!/bin/bash
# Write OVMF variables with our PK, KEK and db enrolled and Secure Boot on,
# so QEMU boots in user mode (enforcing) from the first instruction.
# Runs inside the tools tree, so the variable store matches its OVMF build.
set -euo pipefail

keys=${1:?usage: ovmf-vars.sh KEYS_DIR OUTPUT}
output=${2:?usage: ovmf-vars.sh KEYS_DIR OUTPUT}
guid=$(cat "$keys/owner.guid")

virt-fw-vars --input /usr/share/OVMF/OVMF_VARS_4M.fd --output "$output.tmp" \
    --set-pk "$guid" "$keys/PK.crt" \
    --add-kek "$guid" "$keys/KEK.crt" \
    --add-db "$guid" "$keys/db.crt" \
    --no-microsoft --secure-boot >/dev/null 2>&1 \
    || { echo "ovmf-vars: virt-fw-vars failed for the keys in $keys" >&2; exit 1; }
mv "$output.tmp" "$output"
