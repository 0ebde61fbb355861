# SPDX-License-Identifier: GPL-2.0
#
# Second-level tests, sourced by guest-test.sh inside the first-level VM: a
# small guest (tiny kernel, busybox initramfs) runs under QEMU (TCG) with an
# rmdev two-port instance and an mtty two-port instance passed through as
# vfio-pci sysfsdev devices, and loops data through every port.
#
# mtty wedges a port on any burst of 16 bytes or more (its FIFO ring cannot
# tell full from empty), so its ports are driven with 15-byte writes; rmdev's
# ports must pass plain 4 KiB writes.

# wait_for FILE PATTERN SECONDS
wait_for() {
	local i
	for i in $(seq $(($3 * 5))); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

nested_tests() {
	local l2k=$1 l2i=$2 ur um out qpid t0 rc
	if [ ! -r "$l2k" ] || [ ! -r "$l2i" ]; then
		ok 1 "L2: kernel and initramfs are there" "$l2k $l2i"
		return
	fi
	ur=$(new_uuid)
	um=$(new_uuid)
	expect_eq "L2: create an rmdev two-port instance" \
		"$(write_errno "$ur" "$SUPP/rmdev/mdev_supported_types/rmdev-serial-2/create")" OK
	expect_eq "L2: create an mtty two-port instance" \
		"$(write_errno "$um" "$SUPP/mtty/mdev_supported_types/mtty-2/create")" OK
	out=$TOP/tests/out/l2-console.log
	# rmdev's card sits in slot 04.0, mtty's in 05.0; ttyS0 is L2's console.
	timeout 300 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 128 \
		-display none -nodefaults -no-reboot -serial stdio \
		-kernel "$l2k" -initrd "$l2i" \
		-append "console=ttyS0 quiet panic=-1 8250.nr_uarts=8 l2.tests=00/04.0:4096:4096,00/05.0:1024:15" \
		-device vfio-pci,sysfsdev=/sys/bus/mdev/devices/$ur,addr=04.0 \
		-device vfio-pci,sysfsdev=/sys/bus/mdev/devices/$um,addr=05.0 \
		</dev/null >"$out" 2>&1
	ok $? "L2: QEMU ran the second-level guest to its end" "$(tail -n 3 "$out" | tr '\n' ' ')"
	renumber < <(grep -E '^(#|(not )?ok - )' "$out" | tr -d '\r')
	grep -q '4348:0x3253 driver=serial' "$out"
	ok $? "L2: 8250_pci binds the devices"
	sed 's/^/# rmdev state: /' "/sys/bus/mdev/devices/$ur/rmdev/state"
	write_errno 1 "/sys/bus/mdev/devices/$ur/remove" >/dev/null
	write_errno 1 "/sys/bus/mdev/devices/$um/remove" >/dev/null
}
