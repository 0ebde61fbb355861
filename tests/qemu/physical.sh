# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0
#
# The physical parent, sourced by guest-test.sh inside the test VM: rmdev's
# PCI driver on the VM's pci-serial-4x card (1b36:0004), whose four ports
# are Unix-socket chardevs to tests/qemu/serial-relay.py on the host
# (scripts/vm.sh --card, scripts/vm-test.sh). The relay sends every byte it
# receives on port N back on port N XOR-ed with 0x50 + N, and records what
# it received in tests/out/pserial-N.rx, which this VM sees through its
# tests/out share.
#
# physical_tests moves the card from 8250_pci to rmdev, checks the parent and
# its pool, and runs one second-level guest with two one-port instances
# (card ports 0 and 1) whose stock 8250_pci driver sends 4 KiB through both
# at once: the bytes must come back XOR-ed with the key of the physical port
# behind each instance (so neither a loopback inside rmdev nor a crossed
# port passes), and the relay's record must hold exactly the bytes the guest
# sent, in order. Then bad input: a device rmdev does not know, the card
# unbound while QEMU holds an instance, rmmod with the card bound. It leaves
# the card bound to rmdev for libvirt.sh; physical_release gives it back to
# 8250_pci at the end. Without the card (scripts/vm.sh without --card) every
# test here is one SKIP line.

PHYS_CARD=1b36:0004
PHYS_UNKNOWN=1b36:0005
PCI=/sys/bus/pci

# phys_find VENDOR:DEVICE: the address of the first PCI device with those
# IDs, or nothing.
# Bytes each port carries each way in the second-level guest. Every register
# access there is a VFIO trap of TCG inside TCG: 4096 bytes per port took
# about 300 s on this machine kind, 1024 take a quarter of that and still
# wrap every ring of the path many times (the rings hold 16 to 256 bytes).
PHYS_BYTES=1024

phys_find() {
	local d
	for d in "$PCI"/devices/*; do
		if [ "$(cat "$d/vendor")" = "0x${1%:*}" ] && [ "$(cat "$d/device")" = "0x${1#*:}" ]; then
			basename "$d"
			return
		fi
	done
}

# phys_driver BDF: the name of the driver bound to BDF, or "none".
phys_driver() {
	local l
	l=$(readlink "$PCI/devices/$1/driver" 2>/dev/null) && basename "$l" || echo none
}

# phys_bind BDF DRIVER: binds BDF to DRIVER the way an admin does, through
# driver_override (Documentation/admin-guide.rst, "A physical serial
# card"); DRIVER "" clears the override and lets the bus choose (8250_pci).
phys_bind() {
	local bdf=$1 drv=$2 cur
	cur=$(phys_driver "$bdf")
	printf '%s\n' "$drv" >"$PCI/devices/$bdf/driver_override"
	[ "$cur" = none ] || printf '%s' "$bdf" >"$PCI/drivers/$cur/unbind"
	printf '%s' "$bdf" >"$PCI/drivers_probe"
}

# phys_rx N: the size of the relay's record of port N.
phys_rx() { stat -c %s "$TOP/tests/out/pserial-$1.rx" 2>/dev/null || echo 0; }

# phys_rx_is N OFFSET BYTES KEY: the relay's record of port N from OFFSET on
# is exactly the BYTES bytes l2-serial sends with KEY.
phys_rx_is() {
	cmp -s <(tail -c +$(($2 + 1)) "$TOP/tests/out/pserial-$1.rx") \
		<("$TOP/target/x86_64-unknown-linux-gnu/release/l2-serial" --data "$3" "$4")
}

# phys_l2 LOG HOLD TESTS DEVICES...: runs the second-level guest as nested.sh
# does (with more time: both its ports run at once under nested TCG, which
# took 241 to 481 s to the hold in a test VM with 4096 bytes), with l2.tests=TESTS (all ports at once), l2.hold=HOLD and the QEMU
# devices given; in the background, its console in LOG; PHYS_QPID is QEMU.
phys_l2() {
	local log=$1 hold=$2 tests=$3
	shift 3
	timeout 900 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 128 \
		-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off \
		-display none -nodefaults -no-reboot -serial stdio \
		-kernel "$L2K" -initrd "$L2I" \
		-append "console=ttyS0 quiet panic=-1 8250.nr_uarts=8 l2.parallel=1 l2.tests=$tests l2.hold=$hold" \
		"$@" </dev/null >"$log" 2>&1 &
	PHYS_QPID=$!
}

# phys_mdevctl BDF: mdevctl with the card as --parent.
phys_mdevctl() {
	local bdf=$1 u out
	out=$(mdevctl types -p "$bdf" 2>&1)
	echo "$out" | grep -q rmdev-serial-2 && echo "$out" | grep -A4 'rmdev-serial-1' | grep -q 'Available instances: 4'
	ok $? "physical: mdevctl types -p $bdf lists the card's types and its 4 ports" "$(echo "$out" | head -n 6 | tr '\n' ' ')"
	u=$(new_uuid)
	check "physical: mdevctl define --parent $bdf" mdevctl define -u "$u" -p "$bdf" -t rmdev-serial-2
	mdevctl list -d | grep -q "$u $bdf rmdev-serial-2"
	ok $? "physical: mdevctl list -d shows the definition on the card" "$(mdevctl list -d)"
	check "physical: mdevctl start on the card" mdevctl start -u "$u"
	[ "$(readlink -f "/sys/bus/mdev/devices/$u/mdev_type")" = "$(readlink -f "$SUPP/$bdf/mdev_supported_types/rmdev-serial-2")" ]
	ok $? "physical: the started device's type is the card's rmdev-serial-2"
	expect_eq "physical: the card has 2 ports left" \
		"$(cat "$SUPP/$bdf/mdev_supported_types/rmdev-serial-1/available_instances")" 2
	check "physical: mdevctl stop" mdevctl stop -u "$u"
	check "physical: mdevctl undefine" mdevctl undefine -u "$u"
	[ ! -e "/sys/bus/mdev/devices/$u" ] && ! mdevctl list -d | grep -q "$u"
	ok $? "physical: the mdevctl device is gone"
}

# phys_avail TYPESDIR: available_instances of serial-1/serial-2/pcie-serial-1.
phys_avail() {
	echo "$(cat "$1/rmdev-serial-1/available_instances")/$(cat "$1/rmdev-serial-2/available_instances")/$(cat "$1/rmdev-pcie-serial-1/available_instances")"
}

physical_tests() {
	local bdf bad tdir t u u0 u1 live off0 off1 rc t0 n msg
	bdf=$(phys_find "$PHYS_CARD")
	if [ -z "$bdf" ]; then
		skip "physical: rmdev's PCI parent on the VM's serial card" \
			"the VM has no pci-serial-4x ($PHYS_CARD; scripts/vm.sh --card adds one)"
		return
	fi
	echo "# physical: pci-serial-4x at $bdf"
	expect_eq "physical: 8250_pci (serial) owns the card at boot" "$(phys_driver "$bdf")" serial
	if [ ! -d "$PCI/drivers/rmdev" ]; then
		skip "physical: rmdev's PCI parent on the VM's serial card" "this rmdev.ko has no PCI driver"
		return
	fi

	# Bad input first, while the card is still 8250_pci's: a device rmdev
	# does not know is refused at probe, with a message.
	bad=$(phys_find "$PHYS_UNKNOWN")
	if [ -n "$bad" ]; then
		printf 'rmdev\n' >"$PCI/devices/$bad/driver_override"
		n=$(dmesg | wc -l)
		expect_eq "physical: binding a pci-testdev ($bad) to rmdev is refused with ENODEV" \
			"$(write_errno "$bad" "$PCI/drivers/rmdev/bind")" ENODEV
		expect_eq "physical: the refused device has no driver" "$(phys_driver "$bad")" none
		msg=$(dmesg | tail -n +$((n + 1)) | grep rmdev | grep 'not a serial card')
		[ -n "$msg" ]
		ok $? "physical: the kernel says why (\"not a serial card\")" "$(dmesg | tail -n 3 | tr '\n' ' ')"
		echo "# physical: ${msg:-no message}"
		printf '\n' >"$PCI/devices/$bad/driver_override"
	else
		ok 1 "physical: the VM has a pci-testdev ($PHYS_UNKNOWN) for the refused probe"
	fi

	# The card moves to rmdev and becomes a parent with the three types,
	# whose pool is its four ports.
	phys_bind "$bdf" rmdev
	expect_eq "physical: driver_override moves the card to rmdev" "$(phys_driver "$bdf")" rmdev
	[ -d "$SUPP/$bdf" ]
	ok $? "physical: the card is an mdev parent ($SUPP/$bdf)"
	tdir=$SUPP/$bdf/mdev_supported_types
	expect_eq "physical: the card offers the three serial types" \
		"$(cd "$tdir" 2>&1 && echo *)" "rmdev-pcie-serial-1 rmdev-serial-1 rmdev-serial-2"
	for t in rmdev-serial-1 rmdev-serial-2 rmdev-pcie-serial-1; do
		expect_eq "physical: $t: device_api is vfio-pci" "$(cat "$tdir/$t/device_api" 2>&1)" vfio-pci
	done
	expect_eq "physical: available_instances counts the card's 4 ports (serial-1/serial-2/pcie)" \
		"$(phys_avail "$tdir" 2>&1)" 4/2/4
	[ -d "$SUPP/rmdev" ]
	ok $? "physical: the virtual parent stays next to the card"

	phys_mdevctl "$bdf"

	# Two one-port instances: card ports 0 and 1.
	u0=$(new_uuid)
	u1=$(new_uuid)
	expect_eq "physical: create a one-port instance on the card" \
		"$(write_errno "$u0" "$tdir/rmdev-serial-1/create")" OK
	expect_eq "physical: create a second one" "$(write_errno "$u1" "$tdir/rmdev-serial-1/create")" OK
	expect_eq "physical: available_instances is exact across types" "$(phys_avail "$tdir" 2>&1)" 2/1/2
	grep -q "phys $bdf/0" "/sys/bus/mdev/devices/$u0/rmdev/state" &&
		grep -q "phys $bdf/1" "/sys/bus/mdev/devices/$u1/rmdev/state"
	ok $? "physical: the instances are backed by card ports 0 and 1" \
		"$(grep -h phys "/sys/bus/mdev/devices/$u0/rmdev/state" "/sys/bus/mdev/devices/$u1/rmdev/state" 2>&1 | tr '\n' ' ')"

	if [ ! -r "$L2K" ] || [ ! -r "$L2I" ]; then
		ok 1 "physical L2: kernel and initramfs are there" "$L2K $L2I"
		for u in "$u0" "$u1"; do write_errno 1 "/sys/bus/mdev/devices/$u/remove" >/dev/null; done
	else
		# One second-level guest with both instances, each behind a PCIe
		# root port so that it can be hot-unplugged. Its 8250_pci driver
		# checks both ports at once, each against its physical port's key;
		# then it holds the first instance until it is unplugged.
		off0=$(phys_rx 0)
		off1=$(phys_rx 1)
		live=/tmp/physical-l2.log
		t0=$SECONDS
		phys_l2 "$live" 01/00.0 01/00.0:$PHYS_BYTES:$PHYS_BYTES:50,02/00.0:$PHYS_BYTES:$PHYS_BYTES:51 \
			-device pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=04.0 \
			-device pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=05.0 \
			-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$u0,bus=rp1,addr=00.0" \
			-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$u1,bus=rp2,addr=00.0"
		wait_for "$live" '# L2 holding' 720
		ok $? "physical L2: the guest ran its tests and holds the card's instances" \
			"$(tail -n 3 "$live" | tr '\n' ' ')"
		echo "# physical L2 reached its hold after $((SECONDS - t0)) s"
		n=$(tr -d '\r' <"$live" | grep -cE "^ok - L2 ttyS[0-9]+: $PHYS_BYTES bytes in writes of $PHYS_BYTES come back XOR 0x5[01] intact")
		expect_eq "physical L2: both ports carried $PHYS_BYTES bytes out and their XOR-ed echo back, at once" "$n" 2
		sed 's/^/# physical state: /' "/sys/bus/mdev/devices/$u0/rmdev/state" "/sys/bus/mdev/devices/$u1/rmdev/state"
		# What left the card: the relay's record, seen here through the
		# tests/out share; the relay writes each byte as it arrives, before
		# it echoes it, so it is complete once the guest saw the echo. A
		# wrong key must not match (the comparison can fail).
		phys_rx_is 0 "$off0" "$PHYS_BYTES" 50 && phys_rx_is 1 "$off1" "$PHYS_BYTES" 51
		ok $? "physical: the relay received exactly the bytes the guest sent, on ports 0 and 1" \
			"port 0: $(($(phys_rx 0) - off0)) new bytes, port 1: $(($(phys_rx 1) - off1)) new bytes"
		! phys_rx_is 0 "$off0" "$PHYS_BYTES" 51
		ok $? "physical: port 0's record does not match port 1's data (negative control)"

		# Unbinding the card while QEMU holds both instances: rmdev signals
		# REQ, QEMU asks the guest to unplug, the guest powers the slots
		# off (or reboots, which ends QEMU), QEMU closes the devices, and
		# the unbind returns.
		t0=$SECONDS
		rc=$(timeout 150 bash -c ". $TOP/tests/qemu/lib.sh; write_errno $bdf $PCI/drivers/rmdev/unbind")
		expect_eq "physical: unbinding the card while QEMU holds its instances returns (REQ, guest unplug)" \
			"${rc:-timed out}" OK
		echo "# physical: the unbind took $((SECONDS - t0)) s"
		wait "$PHYS_QPID"
		ok $? "physical L2: QEMU ran the second-level guest to its end" "$(tail -n 3 "$live" | tr '\n' ' ')"
		cp "$live" "$TOP/tests/out/physical-l2-console.log"
		renumber < <(grep -E '^(#|(not )?ok - )' "$live" | tr -d '\r' | sed 's/^\(\(not \)\{0,1\}ok - \)/\1physical /')
		[ ! -e "/sys/bus/mdev/devices/$u0" ] && [ ! -e "/sys/bus/mdev/devices/$u1" ] && [ ! -e "$SUPP/$bdf" ]
		ok $? "physical: the instances and the parent are gone with the unbind"
		expect_eq "physical: the unbound card has no driver" "$(phys_driver "$bdf")" none
		# driver_override still names rmdev: a probe brings the parent back.
		printf '%s' "$bdf" >"$PCI/drivers_probe"
		[ "$(phys_driver "$bdf")" = rmdev ] && [ -d "$SUPP/$bdf" ]
		ok $? "physical: rebinding brings the parent back"
		expect_eq "physical: the rebound card's pool is whole" "$(phys_avail "$tdir" 2>&1)" 4/2/4
	fi

	# rmmod with the card bound and an instance on it, then insmod: the
	# override still names rmdev, so the new driver binds the card again.
	u=$(new_uuid)
	write_errno "$u" "$tdir/rmdev-serial-1/create" >/dev/null
	check "physical: rmmod rmdev with the card bound and an instance on it" rmmod rmdev
	[ ! -e "/sys/bus/mdev/devices/$u" ] && [ ! -e "$SUPP/$bdf" ] && [ "$(phys_driver "$bdf")" = none ]
	ok $? "physical: rmmod removed the instance and the card's parent"
	check "physical: rmdev loads again" insmod "$KO"
	[ "$(phys_driver "$bdf")" = rmdev ] && [ -d "$SUPP/$bdf" ]
	ok $? "physical: the reloaded rmdev binds the card again"
}

# physical_release: the card goes back to 8250_pci; the end of the physical
# tests, after libvirt.sh used the card.
physical_release() {
	local bdf
	bdf=$(phys_find "$PHYS_CARD")
	[ -n "$bdf" ] && [ "$(phys_driver "$bdf")" = rmdev ] || return 0
	phys_bind "$bdf" ""
	expect_eq "physical: clearing driver_override gives the card back to 8250_pci" \
		"$(phys_driver "$bdf")" serial
	[ ! -e "$SUPP/$bdf" ]
	ok $? "physical: the card is no parent any more"
}
