#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a cached kernel in QEMU with the host's root file system shared
# read-only (virtme-ng), and run a command in it: scripts/vm.sh -- CMD...
# With no command it opens a shell. RMDEV_KFLAVOUR=debug boots the debug
# kernel; `--bench` boots the bench kernel, with kmemleak left off. KVM is used when a probe boot shows
# it really boots a guest; otherwise TCG.
#
# The VM gets the serial card of the physical-parent tests (a pci-serial-4x
# wired to tests/qemu/serial-relay.py, and a pci-testdev; scripts/lib.sh)
# when RMDEV_CARD names the directory where a relay already listens
# (scripts/vm-test.sh starts one per boot), or with `--card`, which starts a
# relay in tests/out for this boot and stops it afterwards.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
flavour=${RMDEV_KFLAVOUR:-test}
card=${RMDEV_CARD:-}
while [ $# -gt 0 ]; do
	case "$1" in
	--bench) flavour=bench ;;
	--card) card=start ;;
	*) break ;;
	esac
	shift
done
kdir=$(rmdev_kdir "$flavour")
accel=$(rmdev_accel)
args=(--run "$kdir" --memory 2G --cpus 2 --rwdir="$RMDEV_TOP/tests/out")
case "$flavour" in
# Leak checking is for tests; a bench boot leaves kmemleak off, as
# rmdev.config builds it.
test) args+=(--append "kmemleak=on") ;;
# The debug kernel's checkers must stay on for the whole boot: KASAN prints
# every report, not only the first (kasan_multi_shot), and 4-level paging
# avoids a KASAN report under TCG with LA57 at boot (no5lvl), which would
# taint the kernel and so switch lockdep off before any test ran.
debug) args+=(--append "kmemleak=on no5lvl kasan_multi_shot") ;;
esac
[ "$accel" = kvm ] || args+=(--disable-kvm)
mkdir -p "$RMDEV_TOP/tests/out"
if [ "$card" = start ]; then
	card=$RMDEV_TOP/tests/out
	card_start "$card"
	trap card_stop EXIT
fi
if [ -n "$card" ]; then
	# The card's four ports and the kernel's four legacy ports need more
	# than the 4 8250 ports the kernel registers by default.
	args+=("--qemu-opts=$(card_qemu_opts "$card")" --append "8250.nr_uarts=12")
fi
[ "${1:-}" = "--" ] && shift
if [ $# -gt 0 ]; then
	# vng loses --exec output written to a regular file: always pipe it.
	vng "${args[@]}" --exec "$*" 2>&1 | cat
else
	vng "${args[@]}"
fi
