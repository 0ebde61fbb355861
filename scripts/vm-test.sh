#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The VM test tier: boot once, run tests/qemu/guest-test.sh inside, and
# judge its KTAP with the kernel tree's parser (tests/qemu/ktap_verdict.py).
# Prints "vm: N passed, N failed" and exits non-zero on any failure, on a
# missing or mismatched plan, or on an oops/BUG/WARN in the guest's log (the
# guest's last test reads its kernel log).

set -euo pipefail
. "$(dirname "$0")/lib.sh"
out=$RMDEV_TOP/tests/out
mkdir -p "$out"
"$RMDEV_TOP/scripts/mk-l2-initramfs.sh"
l2k=$(readlink -f "$RMDEV_CACHE/l2/bzImage")
kdir=$(rmdev_kdir "${RMDEV_KFLAVOUR:-test}")
# One boot of the test VM, its output in $out/vm-test.log. A watchdog ends a
# boot that has not started the tests within STALL seconds (the guest
# prints the KTAP version line, "TAP version 13", first thing).
STALL=600
started() { grep -q '^TAP version 13$' "$out/vm-test.log" 2>/dev/null; }
# Every boot has the serial card of the physical-parent tests
# (tests/qemu/physical.sh), its ports wired to a relay started here before
# the boot, so that QEMU finds the relay's sockets, and stopped after it;
# the relay's record of what each port received (tests/out/pserial-N.rx)
# starts empty with every boot and stays for the guest and for a look after.
trap card_stop EXIT
boot() {
	: >"$out/vm-test.log"
	card_start "$out"
	# In its own process group, so that the watchdog can end all of it. The
	# inner script's arguments expand in the inner shell.
	# shellcheck disable=SC2016
	RMDEV_CARD=$out setsid -w bash -c '"$1" -- "$2" 2>&1 | tee "$3"' _ "$RMDEV_TOP/scripts/vm.sh" \
		"RMDEV_KDIR=$kdir RMDEV_VENV=$RMDEV_CACHE/venv bash $RMDEV_TOP/tests/qemu/guest-test.sh $RMDEV_TOP $l2k $out/l2-initramfs.cpio.gz" \
		"$out/vm-test.log" &
	local vm=$!
	for _ in $(seq "$STALL"); do
		started && break
		kill -0 "$vm" 2>/dev/null || break
		sleep 1
	done
	if ! started && kill -0 "$vm" 2>/dev/null; then
		echo "vm: no test output after $STALL s; stopping this boot"
		kill -- -"$vm" 2>/dev/null || kill "$vm" 2>/dev/null || true
	fi
	wait "$vm" || true
	card_stop
}
log "booting the test VM ($(rmdev_accel))"
t0=$SECONDS
boot
# The emulator itself can fail before the guest runs anything: TCG in QEMU
# 10.0 has been seen to abort in iotlb_to_section() at boot, and a boot once
# stalled without output. That is the machine, not a test result: one more
# boot, saying why. A failure after the tests started is never retried.
if ! started; then
	echo "vm: the VM did not start the tests ($(tail -n 1 "$out/vm-test.log")); booting once more"
	boot
fi
log "VM tests took $((SECONDS - t0)) s"
python3 "$RMDEV_TOP/tests/qemu/ktap_verdict.py" "$kdir" "$out/vm-test.log" "$out/vm-ktap.txt"
