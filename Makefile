# Secure AI Appliance: build, boot and test.
#
#   make run    build what changed and boot the appliance under QEMU
#   make test   every test: lints, unit tests, then QEMU boots of the image
#
# Both install the host packages they need first (idempotent).

APPLIANCE_CACHE ?= /var/cache/appliance
# rustup installs cargo here; non-login shells (CI) may not have it on PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
export APPLIANCE_CACHE
# Outside the clone, so a fresh clone on a machine that built before reuses it.
export CARGO_TARGET_DIR ?= $(APPLIANCE_CACHE)/target

VERSION       := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
TOOLS         := $(APPLIANCE_CACHE)/tools-trixie
MKOSI         := image/mkosi --tools-tree=$(TOOLS)
SANDBOX       := $(MKOSI) sandbox
KEYS          ?= keys
export KEYS
AGENT_BIN     := $(CARGO_TARGET_DIR)/release/appliance-agent
IMAGE_DIR     := build/image
RAW           := $(IMAGE_DIR)/appliance.raw
CONVERTED     := $(IMAGE_DIR)/appliance.qcow2 $(IMAGE_DIR)/appliance.vmdk $(IMAGE_DIR)/appliance.vhdx
OVMF_VARS     := build/ovmf/vars.fd
STAMP_SETUP   := $(APPLIANCE_CACHE)/setup.stamp

AGENT_SOURCES := Cargo.toml Cargo.lock $(shell find agent/src -type f) agent/Cargo.toml
IMAGE_SOURCES := $(wildcard mkosi.conf.d/*) $(shell find image -type f ! -name '*.pyc')

.PHONY: all setup keys image run stop test lint unit-test qemu-test clean
.DELETE_ON_ERROR:

all: image

setup: $(STAMP_SETUP) $(TOOLS)/usr/bin/ukify $(KEYS)/db.crt $(KEYS)/pcr-signing.crt

$(STAMP_SETUP): image/setup-host.sh
	bash image/setup-host.sh
	touch $@

$(TOOLS)/usr/bin/ukify: image/tools/mkosi.conf | $(STAMP_SETUP)
	cd image/tools && ../mkosi --tools-tree= --output-directory=$(APPLIANCE_CACHE) -f build
	touch $@

# Secure Boot keys (PK, KEK, db) and the PCR signing key, all in $(KEYS).
keys: $(KEYS)/db.crt $(KEYS)/pcr-signing.crt

$(KEYS)/db.crt $(KEYS)/pcr-signing.crt: image/genkeys.sh
	bash image/genkeys.sh $(KEYS)

$(AGENT_BIN): $(AGENT_SOURCES) | $(STAMP_SETUP)
	cargo build --release --locked -p appliance-agent

build/packages/stamp: $(AGENT_BIN) image/build-packages.sh $(shell find image/agent-package -type f)
	bash image/build-packages.sh $(AGENT_BIN) build/packages $(VERSION)
	touch $@

$(RAW): build/packages/stamp $(IMAGE_SOURCES) $(KEYS)/db.crt $(KEYS)/pcr-signing.crt | setup
	$(MKOSI) -f build
	$(SANDBOX) /usr/bin/python3 image/check-image.py $(IMAGE_DIR)

$(IMAGE_DIR)/appliance.qcow2: $(RAW)
	qemu-img convert -f raw -O qcow2 $< $@
$(IMAGE_DIR)/appliance.vmdk: $(RAW)
	qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse $< $@
$(IMAGE_DIR)/appliance.vhdx: $(RAW)
	qemu-img convert -f raw -O vhdx -o subformat=dynamic $< $@

$(OVMF_VARS): $(KEYS)/db.crt image/ovmf-vars.sh | setup
	mkdir -p $(dir $@)
	$(SANDBOX) bash image/ovmf-vars.sh $(KEYS) $@

image: setup $(RAW) $(CONVERTED) $(OVMF_VARS)

run: image
	/usr/bin/python3 qemu-tests/appliance_vm.py run --image $(IMAGE_DIR)/appliance.qcow2 --ovmf-vars $(OVMF_VARS) --state run-state

stop:
	/usr/bin/python3 qemu-tests/appliance_vm.py stop --state run-state

lint: setup
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

unit-test: setup
	cargo test --locked --workspace

qemu-test: image
	/usr/bin/python3 -m pytest -v -s qemu-tests

# The image comes before the unit tests: the PCR prediction tests compare
# against systemd-measure on the UKI that was just built.
test: lint image unit-test qemu-test

clean:
	rm -rf build run-state
