#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the cached kernel in QEMU with the host's root file system shared
# read-only (virtme-ng), and run a command in it: scripts/vm.sh -- CMD...
# With no command it opens a shell. KVM is used when a probe boot shows it
# really boots a guest; otherwise TCG.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
kdir=$(rmdev_kdir)
accel=$(rmdev_accel)
args=(--run "$kdir" --memory 2G --cpus 2 --rwdir="$RMDEV_TOP/tests/out"
	--append "kmemleak=on")
[ "$accel" = kvm ] || args+=(--disable-kvm)
mkdir -p "$RMDEV_TOP/tests/out"
[ "${1:-}" = "--" ] && shift
if [ $# -gt 0 ]; then
	# vng loses --exec output written to a regular file: always pipe it.
	vng "${args[@]}" --exec "$*" 2>&1 | cat
else
	vng "${args[@]}"
fi
