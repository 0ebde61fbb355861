#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`: boot the VM once and measure rmdev against mtty and against
# the machine's floor (tools/vfio-bench). A report, not a test: nothing here
# asserts a time.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$RMDEV_TOP"
cargo build --quiet --release -p vfio-bench
accel=$(rmdev_accel)
"$RMDEV_TOP/scripts/vm.sh" -- "bash $RMDEV_TOP/tests/qemu/bench.sh $RMDEV_TOP $accel $RMDEV_TOP/tests/out/bench"
