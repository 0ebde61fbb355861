#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: boot the VM, load rmdev, create an instance and show it; with a
# terminal on standard input, leave a shell in the VM to the user. The VM has
# the test serial card (scripts/vm.sh --card), whose ports echo XOR-ed through
# tests/qemu/serial-relay.py; RMDEV_CARD=0 boots without it.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
"$RMDEV_TOP/scripts/mk-l2-initramfs.sh"
l2=("$(readlink -f "$RMDEV_CACHE/l2/bzImage")" "$RMDEV_TOP/tests/out/l2-initramfs.cpio.gz")
card=(--card)
[ "${RMDEV_CARD:-}" = 0 ] && card=()
unset RMDEV_CARD
if [ -t 0 ]; then
	kdir=$(rmdev_kdir "${RMDEV_KFLAVOUR:-test}")
	args=(--run "$kdir" --memory 2G --cpus 2 --rwdir="$RMDEV_TOP/tests/out")
	[ "$(rmdev_accel)" = kvm ] || args+=(--disable-kvm)
	if [ ${#card[@]} -gt 0 ]; then
		card_start "$RMDEV_TOP/tests/out"
		trap card_stop EXIT
		args+=("--qemu-opts=$(card_qemu_opts "$RMDEV_TOP/tests/out")" --append "8250.nr_uarts=12")
	fi
	vng "${args[@]}" --exec "bash $RMDEV_TOP/tests/qemu/demo.sh $RMDEV_TOP 1 ${l2[*]}"
	exit
fi
"$RMDEV_TOP/scripts/vm.sh" "${card[@]}" -- "bash $RMDEV_TOP/tests/qemu/demo.sh $RMDEV_TOP 0 ${l2[*]}"
