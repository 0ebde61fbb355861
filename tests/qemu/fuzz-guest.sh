#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The in-guest part of `make fuzz`: load vfio, mdev and rmdev, fuzz every
# rmdev type's device fd (tests/qemu/fuzz.sh), then the checkers' verdict:
# no leak (kmemleak), lockdep still on, and no oops or checker report in the
# kernel log. Prints KTAP. $1 is the repository's path, $2 the calls per
# type, $3 the seed (random when empty). RMDEV_KDIR names the kernel tree.

set -u
TOP=$1
CALLS=${2:-1000000}
SEED=${3:-}
# shellcheck source=lib.sh
. "$TOP/tests/qemu/lib.sh"
# shellcheck source=fuzz.sh
. "$TOP/tests/qemu/fuzz.sh"

ktap_print_header
dmesg -n 1 2>/dev/null || true
mount -t debugfs none /sys/kernel/debug 2>/dev/null || true
check "vfio_iommu_type1 loads" modprobe vfio_iommu_type1
check "mdev loads" modprobe mdev
check "rmdev loads" insmod "$TOP/rmdev.ko"

fuzz_tests "$CALLS" "$SEED"

if [ -w /sys/kernel/debug/kmemleak ]; then
	expect_eq "kmemleak finds no rmdev allocation leaked" "$(kmemleak_scan rmdev)" 0
fi
check "rmmod rmdev succeeds" rmmod rmdev
if [ -w /sys/kernel/debug/kmemleak ]; then
	[ "$(kmemleak_scan)" = 0 ]
	ok $? "kmemleak finds no leak anywhere" "$(head -n 20 /sys/kernel/debug/kmemleak)"
fi
if [ -r /proc/lockdep_stats ]; then
	grep -Eq '^ *debug_locks: +1$' /proc/lockdep_stats
	ok $? "lockdep stayed on for the whole run" "$(grep debug_locks /proc/lockdep_stats)"
fi
bad=$(checker_reports)
[ -z "$bad" ]
ok $? "no oops, BUG, WARN or checker report in the kernel log" "$bad"
finish
