#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build rmdev.ko (and the userspace test tools) against the cached kernel.
# CLIPPY=1 runs clippy over the module as the kernel's `make CLIPPY=1` does.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
kdir=$(rmdev_kdir)
cd "$RMDEV_TOP"
make -s -C "$kdir" M="$RMDEV_TOP" LLVM="$RMDEV_LLVM" \
	RUST_LIB_SRC="$RMDEV_CACHE/rust-lib-src" ${CLIPPY:+CLIPPY=1} modules
log "built $(du -k rmdev.ko | cut -f1)K rmdev.ko"
cargo build --quiet --release -p vfio-test
