# SPDX-License-Identifier: GPL-2.0
#
# rmdev's front door. `make run` and `make test` do all set-up themselves on a
# fresh machine (see README.md); the other targets are for development.

SHELL := /bin/bash
S := scripts

.PHONY: all setup module test test-host fuzz-host lint test-vm test-debug run bench fuzz clippy clean

all: module

setup:
	@$(S)/setup.sh all

module: setup
	@$(S)/build-module.sh

test-host:
	cargo test --quiet --workspace

# The host fuzzer (tools/host-fuzz, Documentation/vfio_pci_core.rst): 10^7
# seeded cases per target against the kernel-free code. No kernel, no VM.
# CASES=N runs fewer, SEED=S replays a printed seed.
fuzz-host:
	cargo run --quiet --release -p host-fuzz -- --target all \
		$(if $(CASES),--cases $(CASES)) $(if $(SEED),--seed $(SEED))

# Style gates: default rustfmt over every crate, clippy over host code with
# warnings as errors (the module goes through clippy in `make test`), and
# ShellCheck over every shell script (`setup.sh lint` installs it if missing).
SHELL_SCRIPTS := $(wildcard scripts/*.sh tests/qemu/*.sh) tests/qemu/l2/init .ci/run
lint:
	@$(S)/setup.sh lint
	cargo fmt --all --check
	rustfmt --edition 2021 --check rmdev_main.rs
	cargo clippy --quiet --workspace --all-targets -- -D warnings
	shellcheck --external-sources --source-path=SCRIPTDIR $(SHELL_SCRIPTS)

test: setup test-host lint
	@CLIPPY=1 $(S)/build-module.sh
	@$(S)/vm-test.sh

test-vm: module
	@$(S)/vm-test.sh

# The VM tier on the debug kernel (KASAN, lockdep, KFENCE, UBSAN, kmemleak,
# fault injection; built on first use), fault injection included. Slow under
# TCG: see Documentation/testing.rst.
test-debug: export RMDEV_KFLAVOUR := debug
test-debug:
	@$(S)/setup.sh all
	@$(S)/build-module.sh
	@$(S)/vm-test.sh

# The test kernel, booted with kmemleak off, and a copy of the module built
# apart in tests/out/bench-build (see scripts/build-module.sh --bench).
bench: setup
	@$(S)/setup.sh bench-kernel
	@$(S)/build-module.sh --bench
	@$(S)/bench.sh

# The host fuzz targets (CASES=N), then the device-fd fuzzer in a VM of the
# debug kernel, 10^6 calls per rmdev type (CALLS=N, SEED=S).
fuzz: export RMDEV_KFLAVOUR := debug
fuzz:
	@$(S)/setup.sh all
	@$(S)/build-module.sh
	@CASES="$(CASES)" CALLS="$(CALLS)" SEED="$(SEED)" $(S)/fuzz.sh

run: setup
	@$(S)/build-module.sh
	@$(S)/run.sh

clippy: setup
	@CLIPPY=1 $(S)/build-module.sh

clean:
	@if [ -f "$${XDG_CACHE_HOME:-$$HOME/.cache}/rmdev/kernel/current" ]; then \
		$(MAKE) -C "$$(cat "$${XDG_CACHE_HOME:-$$HOME/.cache}/rmdev/kernel/current")" M=$(CURDIR) LLVM=-19 clean; fi
	rm -rf target tests/out
