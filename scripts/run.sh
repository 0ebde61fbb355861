#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: boot the VM, load rmdev, create an instance and show it; with a
# terminal on standard input, leave a shell in the VM to the user.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
"$RMDEV_TOP/scripts/mk-l2-initramfs.sh"
l2=("$(readlink -f "$RMDEV_CACHE/l2/bzImage")" "$RMDEV_TOP/tests/out/l2-initramfs.cpio.gz")
if [ -t 0 ]; then
	kdir=$(rmdev_kdir "${RMDEV_KFLAVOUR:-test}")
	args=(--run "$kdir" --memory 2G --cpus 2 --rwdir="$RMDEV_TOP/tests/out")
	[ "$(rmdev_accel)" = kvm ] || args+=(--disable-kvm)
	exec vng "${args[@]}" --exec "bash $RMDEV_TOP/tests/qemu/demo.sh $RMDEV_TOP 1 ${l2[*]}"
fi
"$RMDEV_TOP/scripts/vm.sh" -- "bash $RMDEV_TOP/tests/qemu/demo.sh $RMDEV_TOP 0 ${l2[*]}"
