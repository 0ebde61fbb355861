#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build rmdev.ko (and the userspace test tools) against the cached test
# kernel (the debug kernel with RMDEV_KFLAVOUR=debug). CLIPPY=1 runs clippy over the module as the kernel's `make CLIPPY=1`
# does. `--bench` builds a copy of the tree against the bench kernel instead,
# in tests/out/bench-build, so that the two builds never share objects or
# generated bindings (the kernels' structure layouts differ).

set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$RMDEV_TOP"
if [ "${1:-}" = "--bench" ]; then
	kdir=$(rmdev_kdir bench)
	src=$RMDEV_TOP/tests/out/bench-build
	mkdir -p "$src"
	# The module's sources only: everything but the build products, the
	# tools' targets and the test output.
	git ls-files -co --exclude-standard -- ':!tests' ':!tools' ':!Documentation' |
		tar -c -T - | tar -x -C "$src"
else
	kdir=$(rmdev_kdir "${RMDEV_KFLAVOUR:-test}")
	src=$RMDEV_TOP
fi
# Kbuild runs an external module's commands from the kernel tree with
# relative paths, so a build made against the other kernel (test or debug)
# would look up to date: the build products of another kernel go first.
stamp=$src/.rmdev-kdir
if [ "$(cat "$stamp" 2>/dev/null)" != "$kdir" ]; then
	make -s -C "$kdir" M="$src" LLVM="$RMDEV_LLVM" clean
	echo "$kdir" >"$stamp"
fi
make -s -C "$kdir" M="$src" LLVM="$RMDEV_LLVM" \
	RUST_LIB_SRC="$RMDEV_CACHE/rust-lib-src" ${CLIPPY:+CLIPPY=1} modules
log "built $(du -k "$src/rmdev.ko" | cut -f1)K $src/rmdev.ko"
cargo build --quiet --release -p vfio-test -p vfio-fuzz
