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
# One boot of the test VM, its output in $out/vm-test.log. A watchdog ends a
# boot that has not started the tests within STALL seconds (the guest
# prints "KTAP version 1" first thing).
STALL=240
boot() {
	: >"$out/vm-test.log"
	# In its own process group, so that the watchdog can end all of it.
	setsid -w bash -c '"$1" -- "$2" 2>&1 | tee "$3"' _ "$RMDEV_TOP/scripts/vm.sh" \
		"bash $RMDEV_TOP/tests/qemu/guest-test.sh $RMDEV_TOP $l2k $out/l2-initramfs.cpio.gz" \
		"$out/vm-test.log" &
	local vm=$! i
	for i in $(seq "$STALL"); do
		grep -q '^KTAP version 1' "$out/vm-test.log" 2>/dev/null && break
		kill -0 "$vm" 2>/dev/null || break
		sleep 1
	done
	if ! grep -q '^KTAP version 1' "$out/vm-test.log" && kill -0 "$vm" 2>/dev/null; then
		echo "vm: no test output after $STALL s; stopping this boot"
		kill -- -"$vm" 2>/dev/null || kill "$vm" 2>/dev/null || true
	fi
	wait "$vm" || true
}
log "booting the test VM ($(rmdev_accel))"
t0=$SECONDS
boot
# The emulator itself can fail before the guest runs anything: TCG in QEMU
# 10.0 has been seen to abort in iotlb_to_section() at boot, and a boot once
# stalled without output. That is the machine, not a test result: one more
# boot, saying why. A failure after the tests started is never retried.
if ! grep -q '^KTAP version 1' "$out/vm-test.log"; then
	echo "vm: the VM did not start the tests ($(tail -n 1 "$out/vm-test.log")); booting once more"
	boot
fi
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
