#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: boot the VM, load rmdev, create an instance and show it; with a
# terminal on standard input, leave a shell in the VM to the user.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
if [ -t 0 ]; then
	. "$RMDEV_TOP/scripts/lib.sh"
	kdir=$(rmdev_kdir)
	args=(--run "$kdir" --memory 2G --cpus 2)
	[ "$(rmdev_accel)" = kvm ] || args+=(--disable-kvm)
	exec vng "${args[@]}" --exec "bash $RMDEV_TOP/tests/qemu/demo.sh $RMDEV_TOP 1"
fi
"$RMDEV_TOP/scripts/vm.sh" -- "bash $RMDEV_TOP/tests/qemu/demo.sh $RMDEV_TOP 0"
