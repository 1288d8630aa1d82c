#!/bin/bash
# Generate the Secure Boot keys (PK, KEK, db) that sign and admit the image,
# and the PCR signing key whose signature over the expected PCR 11 values is
# embedded in the UKI (.pcrsig, with the public key in .pcrpkey).
# These are test and development keys: each machine makes its own, and they
# never enter git. A vendor release uses keys kept offline or in an HSM.
set -euo pipefail

keys=${1:?usage: genkeys.sh KEYS_DIR}
mkdir -p "$keys"
chmod 700 "$keys"

for name in PK KEK db pcr-signing; do
    if [ -f "$keys/$name.key" ] && [ -f "$keys/$name.crt" ]; then
        continue
    fi
    # Half a pair means keys kept elsewhere (an HSM) or a mistake: never
    # replace a certificate or key that exists.
    if [ -f "$keys/$name.key" ] || [ -f "$keys/$name.crt" ]; then
        echo "genkeys: $keys has only one of $name.key and $name.crt; restore the other, or remove both to generate a new pair" >&2
        exit 1
    fi
    echo "genkeys: creating $name in $keys" >&2
    openssl req -new -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -subj "/CN=Secure AI Appliance $name (development)/" \
        -keyout "$keys/$name.key.tmp" -out "$keys/$name.crt.tmp" 2>/dev/null
    chmod 600 "$keys/$name.key.tmp"
    mv "$keys/$name.key.tmp" "$keys/$name.key"
    mv "$keys/$name.crt.tmp" "$keys/$name.crt"
done

# The owner GUID recorded with each certificate in the firmware's signature
# lists; any fixed value works, one per machine keeps enrolments traceable.
if [ ! -f "$keys/owner.guid" ]; then
    cat /proc/sys/kernel/random/uuid > "$keys/owner.guid"
fi
