#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`: boot the test kernel once, with kmemleak off, and measure rmdev against mtty and against the machine's floor
# (tools/vfio-bench). A report, not a test: nothing here asserts a time.
#
# `make bench RUNS=3` (or `scripts/bench.sh --runs 3`) measures the latency
# rows in three passes in that boot, each pass rmdev and mtty side by side,
# and prints every pass and the median of the passes (of the ratios, and of
# the figures). `--ko MODULE` loads another build of rmdev instead of the
# tree's bench build (tests/out/bench-build/rmdev.ko, made by
# `scripts/build-module.sh --bench`), to compare builds; it must have been
# built against the bench kernel.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$RMDEV_TOP"
runs=${RUNS:-1}
ko=$RMDEV_TOP/tests/out/bench-build/rmdev.ko
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=${2:-} && shift 2 ;;
	# Another build of the module (an absolute path the VM can read, such
	# as a copy of the tree's rmdev.ko from before a change).
	--ko) ko=${2:-} && shift 2 ;;
	*)
		echo "usage: scripts/bench.sh [--runs N] [--ko MODULE]" >&2
		exit 2
		;;
	esac
done
case "$runs" in
[1-9] | [1-9][0-9]) ;;
*)
	echo "bench: RUNS/--runs takes a number of passes from 1 to 99, not '$runs'" >&2
	exit 2
	;;
esac
cargo build --quiet --release -p vfio-bench
accel=$(rmdev_accel)
"$RMDEV_TOP/scripts/vm.sh" --bench -- "bash $RMDEV_TOP/tests/qemu/bench.sh $RMDEV_TOP $accel $RMDEV_TOP/tests/out/bench $runs $ko"
