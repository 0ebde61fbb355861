#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The VM test tier: boot once, run tests/qemu/guest-test.sh inside, and
# judge its KTAP. Prints "N passed, N failed" and exits non-zero on any
# failure, on a missing plan, or on an oops/BUG/WARN in the guest's log.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
out=$RMDEV_TOP/tests/out
mkdir -p "$out"
"$RMDEV_TOP/scripts/mk-l2-initramfs.sh"
l2k=$(readlink -f "$RMDEV_CACHE/l2/bzImage")
log "booting the test VM ($(rmdev_accel))"
t0=$SECONDS
"$RMDEV_TOP/scripts/vm.sh" -- "bash $RMDEV_TOP/tests/qemu/guest-test.sh $RMDEV_TOP $l2k $out/l2-initramfs.cpio.gz" |
	tee "$out/vm-test.log"
pass=$(grep -cE '^ok [0-9]+ ' "$out/vm-test.log" || true)
fail=$(grep -E '^not ok [0-9]+ ' "$out/vm-test.log" | grep -vc '# TODO' || true)
todo=$(grep -E '^not ok [0-9]+ .*# TODO' "$out/vm-test.log" | grep -c . || true)
plan=$(grep -E '^1\.\.[0-9]+$' "$out/vm-test.log" | tail -n1 | cut -d. -f3)
log "VM tests took $((SECONDS - t0)) s"
if [ -z "$plan" ] || [ "$plan" != $((pass + fail + todo)) ]; then
	echo "vm: the guest run did not finish (plan '${plan:-none}', $((pass + fail + todo)) results)"
	fail=$((fail + 1))
fi
[ "$todo" = 0 ] || echo "vm: $todo known deviations of the reference driver (KTAP TODO), not counted"
echo "vm: $pass passed, $fail failed"
[ "$fail" = 0 ]
