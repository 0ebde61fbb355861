# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0
#
# Second-level tests, sourced by guest-test.sh inside the first-level VM: a
# small guest (tiny kernel, busybox initramfs) runs under QEMU (TCG) with an
# rmdev instance of every type and an mtty two-port instance passed through
# as vfio-pci sysfsdev devices, and loops data through every port. Then the
# rmdev instance is removed while QEMU still holds it, which must complete
# through REQ and a guest-side hot-unplug.
#
# mtty wedges a port on any burst of 16 bytes or more (its FIFO ring cannot
# tell full from empty), so its ports are driven with 15-byte writes; rmdev's
# ports must pass plain 4 KiB writes.

# wait_for FILE PATTERN SECONDS
wait_for() {
	local end=$((SECONDS + $3))
	while [ "$SECONDS" -lt "$end" ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.5
	done
	return 1
}

nested_tests() {
	local l2k=$1 l2i=$2 ur um u1 ux un out live qpid t0 rc
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
	# Every other rmdev type too, so that QEMU realizes each of them and the
	# guest's stock driver drives it: the one-port card in slot 06.0, the PCI
	# Express function (4 KiB of configuration space, which QEMU reads in one
	# call) in slot 07.0.
	u1=$(new_uuid)
	ux=$(new_uuid)
	expect_eq "L2: create an rmdev one-port instance" \
		"$(write_errno "$u1" "$SUPP/rmdev/mdev_supported_types/rmdev-serial-1/create")" OK
	expect_eq "L2: create an rmdev PCI Express instance" \
		"$(write_errno "$ux" "$SUPP/rmdev/mdev_supported_types/rmdev-pcie-serial-1/create")" OK
	# The mediated NVMe controller, behind a second root port (bus 02): the
	# guest's stock nvme driver must find its namespace and move data
	# through it with O_DIRECT (tests/qemu/l2/init, l2.nvme).
	un=$(new_uuid)
	expect_eq "L2: create an rmdev NVMe controller" \
		"$(write_errno "$un" "$SUPP/rmdev_nvme/mdev_supported_types/rmdev_nvme-ram/create")" OK
	out=$TOP/tests/out/l2-console.log
	# The log is written to the VM's tmpfs: a file QEMU is still writing on
	# the 9p share cannot be read back meanwhile.
	live=/tmp/l2-console.log
	# rmdev's card sits behind a PCIe root port (bus 01) so that QEMU can
	# hot-unplug it when asked through REQ: the guest's pciehp powers the slot
	# off and QEMU lets go of the device. Native PCIe hotplug needs ACPI
	# hotplug off; the small guest has no ACPI. mtty's card is in slot 05.0.
	# ttyS0 is L2's console.
	timeout 600 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 128 \
		-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off \
		-display none -nodefaults -no-reboot -serial stdio \
		-kernel "$l2k" -initrd "$l2i" \
		-append "console=ttyS0 quiet panic=-1 8250.nr_uarts=8 l2.tests=01/00.0:4096:4096,00/05.0:1024:15,00/06.0:4096:4096,00/07.0:4096:4096 l2.nvme=02/00.0 l2.hold=01/00.0" \
		-device pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=04.0 \
		-device pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=08.0 \
		-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$un,bus=rp2,addr=00.0" \
		-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$ur,bus=rp1,addr=00.0" \
		-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$um,addr=05.0" \
		-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$u1,addr=06.0" \
		-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$ux,addr=07.0" \
		</dev/null >"$live" 2>&1 &
	qpid=$!
	# Once L2 has run its tests it waits for the rmdev card to go away.
	# Removing the instance now must not hang: rmdev signals REQ, QEMU asks
	# the guest to unplug, the guest powers the slot off, QEMU closes the
	# device, and the remove completes.
	wait_for "$live" '# L2 holding' 480
	ok $? "L2: the guest ran its tests and holds the rmdev card" "$(tail -n 3 "$live" | tr '\n' ' ')"
	sed 's/^/# rmdev state: /' "/sys/bus/mdev/devices/$ur/rmdev/state"
	t0=$SECONDS
	rc=$(timeout 150 sh -c "echo 1 > /sys/bus/mdev/devices/$ur/remove && echo OK || echo failed")
	expect_eq "L2: removing the rmdev instance QEMU holds completes (REQ, guest unplug)" \
		"${rc:-timed out}" OK
	echo "# remove of a held instance took $((SECONDS - t0)) s"
	wait "$qpid"
	ok $? "L2: QEMU ran the second-level guest to its end" "$(tail -n 3 "$live" | tr '\n' ' ')"
	cp "$live" "$out"
	renumber < <(grep -E '^(#|(not )?ok - )' "$out" | tr -d '\r')
	grep -q '4348:0x3253 driver=serial' "$out"
	ok $? "L2: 8250_pci binds the devices"
	grep -q '4348:0x3254 driver=nvme' "$out"
	ok $? "L2: the stock nvme driver binds the rmdev NVMe controller"
	[ ! -e "/sys/bus/mdev/devices/$ur" ]
	ok $? "L2: the rmdev instance is gone"
	for u in "$um" "$u1" "$ux" "$un"; do
		write_errno 1 "/sys/bus/mdev/devices/$u/remove" >/dev/null
	done
}
