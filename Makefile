# SPDX-License-Identifier: GPL-2.0
#
# rmdev's front door. `make run` and `make test` do all set-up themselves on a
# fresh machine (see README.md); the other targets are for development.

SHELL := /bin/bash
S := scripts

.PHONY: all setup module test test-host test-vm run clippy fmt-check clean

all: module

setup:
	@$(S)/setup.sh all

module: setup
	@$(S)/build-module.sh

test-host:
	cargo test --quiet

test: setup test-host
	@$(S)/build-module.sh
	@$(S)/vm-test.sh

test-vm: module
	@$(S)/vm-test.sh

run: setup
	@$(S)/build-module.sh
	@$(S)/run.sh

clippy: setup
	@CLIPPY=1 $(S)/build-module.sh

fmt-check:
	rustfmt --edition 2021 --check rmdev_main.rs host.rs
	cargo fmt --all --check

clean:
	@if [ -f "$${XDG_CACHE_HOME:-$$HOME/.cache}/rmdev/kernel/current" ]; then \
		$(MAKE) -C "$$(cat "$${XDG_CACHE_HOME:-$$HOME/.cache}/rmdev/kernel/current")" M=$(CURDIR) LLVM=-19 clean; fi
	rm -rf target tests/out
