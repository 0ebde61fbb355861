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
# its pool (ENOSPC past the card's four ports), that a card instance offers
# no migration, and runs one second-level guest with an instance of every
# type on the card's four ports (a two-port one, a one-port one and the PCI
# Express one) whose stock 8250_pci driver sends data through all four at
# once: the bytes must come back XOR-ed with the key of the physical port
# behind each instance port (so neither a loopback inside rmdev nor a crossed
# port passes), and the relay's record must hold exactly the bytes the guest
# sent, in order. Then bad input: a device rmdev does not know, the card
# unbound while QEMU holds its instances, rmmod with the card bound. It leaves
# the card bound to rmdev for libvirt.sh; physical_unplug then removes the
# card from the PCI bus while a process holds an instance, and brings it back
# with a rescan; physical_release gives it back to 8250_pci at the end.
# Without the card (scripts/vm.sh without --card) every test here is one
# SKIP line.

PHYS_CARD=1b36:0004
PHYS_UNKNOWN=1b36:0005
PCI=/sys/bus/pci

# Bytes each port carries each way in the second-level guest. Every register
# access there is a VFIO trap of TCG inside TCG: 4096 bytes per port took
# about 300 s on this machine kind, 1024 take a quarter of that and still
# wrap every ring of the path many times (the rings hold 16 to 256 bytes).
PHYS_BYTES=1024

# phys_find VENDOR:DEVICE: the address of the first PCI device with those
# IDs, or nothing.
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
# does, with l2.tests=TESTS (all ports at once), l2.hold=HOLD and the QEMU
# devices given; in the background, its console in LOG; PHYS_QPID is QEMU.
# It gets more time: its ports run at once under nested TCG, which took 167
# to 447 s to the hold in a test VM with four ports of 1024 bytes (241 to
# 481 s with two ports of 4096), so the hold is awaited for 840 s and QEMU
# ends after 1000 s.
phys_l2() {
	local log=$1 hold=$2 tests=$3
	shift 3
	timeout 1000 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 128 \
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
	local bdf bad tdir t u u0 u1 u2 ua ub uc live rc t0 n msg
	local -a offs
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
	# The card's interrupt as the kernel shows it: QEMU's serial cards have
	# no MSI, so this is the card's INTx line (Documentation/testing.rst).
	echo "# physical: the card's interrupt: $(grep -w rmdev /proc/interrupts | tr -s ' ')"

	phys_mdevctl "$bdf"

	# The pool is the card's four ports, whatever the types: a two-port and
	# two one-port instances take all of them, and one more instance of any
	# type is ENOSPC, as on the virtual parent, until one goes.
	ua=$(new_uuid)
	ub=$(new_uuid)
	uc=$(new_uuid)
	expect_eq "physical: a two-port and two one-port instances fill the card's 4 ports" \
		"$(write_errno "$ua" "$tdir/rmdev-serial-2/create")/$(write_errno "$ub" "$tdir/rmdev-serial-1/create")/$(write_errno "$uc" "$tdir/rmdev-pcie-serial-1/create")" \
		OK/OK/OK
	expect_eq "physical: a full card shows 0 available_instances for every type" "$(phys_avail "$tdir" 2>&1)" 0/0/0
	for t in rmdev-serial-1 rmdev-serial-2 rmdev-pcie-serial-1; do
		expect_eq "physical: $t: create past the card's ports is ENOSPC" \
			"$(write_errno "$(new_uuid)" "$tdir/$t/create")" ENOSPC
	done
	expect_eq "physical: the refused creates left the card's 3 instances only" \
		"$(find "$tdir"/*/devices -mindepth 1 | wc -l)" 3
	expect_eq "physical: removing the two-port instance gives back its 2 ports" \
		"$(write_errno 1 "/sys/bus/mdev/devices/$ua/remove") $(phys_avail "$tdir" 2>&1)" "OK 2/1/2"

	# Migration: a card instance offers none (its line stays with the
	# hardware); a virtual instance of the same type, which migrates, takes
	# the same calls as the control.
	u=$(new_uuid)
	write_errno "$u" "$SUPP/rmdev/mdev_supported_types/rmdev-serial-1/create" >/dev/null
	renumber < <("$VT" nomig "/sys/bus/mdev/devices/$ub" "/sys/bus/mdev/devices/$u" |
		sed 's/^\(\(not \)\{0,1\}ok - \)/\1physical: migration on a card instance: /')
	for u in "$ub" "$uc" "$u"; do write_errno 1 "/sys/bus/mdev/devices/$u/remove" >/dev/null; done
	expect_eq "physical: the card's pool is whole again" "$(phys_avail "$tdir" 2>&1)" 4/2/4

	# Instances of every type on the card's four ports: a two-port one on
	# ports 0 and 1, a one-port one on port 2 and the PCI Express one on
	# port 3.
	u0=$(new_uuid)
	u1=$(new_uuid)
	u2=$(new_uuid)
	expect_eq "physical: create a two-port instance on the card" \
		"$(write_errno "$u0" "$tdir/rmdev-serial-2/create")" OK
	expect_eq "physical: create a one-port instance" "$(write_errno "$u1" "$tdir/rmdev-serial-1/create")" OK
	expect_eq "physical: available_instances is exact across types" "$(phys_avail "$tdir" 2>&1)" 1/0/1
	expect_eq "physical: create a PCI Express instance" \
		"$(write_errno "$u2" "$tdir/rmdev-pcie-serial-1/create")" OK
	grep -q "^port0 .* phys $bdf/0" "/sys/bus/mdev/devices/$u0/rmdev/state" &&
		grep -q "^port1 .* phys $bdf/1" "/sys/bus/mdev/devices/$u0/rmdev/state" &&
		grep -q "phys $bdf/2" "/sys/bus/mdev/devices/$u1/rmdev/state" &&
		grep -q "phys $bdf/3" "/sys/bus/mdev/devices/$u2/rmdev/state"
	ok $? "physical: the instances are backed by card ports 0 and 1, 2, and 3" \
		"$(grep -h phys "/sys/bus/mdev/devices/$u0/rmdev/state" "/sys/bus/mdev/devices/$u1/rmdev/state" \
			"/sys/bus/mdev/devices/$u2/rmdev/state" 2>&1 | tr '\n' ' ')"

	if [ ! -r "$L2K" ] || [ ! -r "$L2I" ]; then
		ok 1 "physical L2: kernel and initramfs are there" "$L2K $L2I"
		for u in "$u0" "$u1" "$u2"; do write_errno 1 "/sys/bus/mdev/devices/$u/remove" >/dev/null; done
	else
		# One second-level guest with the three instances, each behind a
		# PCIe root port so that it can be hot-unplugged (buses 01, 02 and
		# 03). Its 8250_pci driver checks all four ports at once, each
		# against its physical port's key; then it holds the first
		# instance until it is unplugged.
		for n in 0 1 2 3; do offs[n]=$(phys_rx $n); done
		live=/tmp/physical-l2.log
		t0=$SECONDS
		phys_l2 "$live" 01/00.0 \
			01/00.0:$PHYS_BYTES:$PHYS_BYTES:50,02/00.0:$PHYS_BYTES:$PHYS_BYTES:52,03/00.0:$PHYS_BYTES:$PHYS_BYTES:53 \
			-device pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=04.0 \
			-device pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=05.0 \
			-device pcie-root-port,id=rp3,chassis=3,slot=3,bus=pcie.0,addr=06.0 \
			-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$u0,bus=rp1,addr=00.0" \
			-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$u1,bus=rp2,addr=00.0" \
			-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$u2,bus=rp3,addr=00.0"
		wait_for "$live" '# L2 holding' 840
		ok $? "physical L2: the guest ran its tests and holds the card's instances" \
			"$(tail -n 3 "$live" | tr '\n' ' ')"
		echo "# physical L2 reached its hold after $((SECONDS - t0)) s"
		tr -d '\r' <"$live" | grep -q '^# L2 pci 0000:03:00.0 0x4348:0x3253 driver=serial$'
		ok $? "physical L2: 8250_pci drives the PCI Express instance (03:00.0)" \
			"$(tr -d '\r' <"$live" | grep '^# L2 pci' | tr '\n' ' ')"
		n=$(tr -d '\r' <"$live" | grep -cE "^ok - L2 ttyS[0-9]+: $PHYS_BYTES bytes in writes of $PHYS_BYTES come back XOR 0x5[0-3] intact")
		expect_eq "physical L2: all four ports carried $PHYS_BYTES bytes out and their XOR-ed echo back, at once" "$n" 4
		sed 's/^/# physical state: /' "/sys/bus/mdev/devices/$u0/rmdev/state" "/sys/bus/mdev/devices/$u1/rmdev/state" \
			"/sys/bus/mdev/devices/$u2/rmdev/state"
		# What left the card: the relay's record, seen here through the
		# tests/out share; the relay writes each byte as it arrives, before
		# it echoes it, so it is complete once the guest saw the echo. A
		# wrong key must not match (the comparison can fail).
		rc=0
		for n in 0 1 2 3; do phys_rx_is $n "${offs[n]}" "$PHYS_BYTES" 5$n || rc=1; done
		ok $rc "physical: the relay received exactly the bytes the guest sent, on ports 0 to 3" \
			"new bytes on ports 0 to 3: $(for n in 0 1 2 3; do printf '%s ' $(($(phys_rx $n) - offs[n])); done)"
		! phys_rx_is 0 "${offs[0]}" "$PHYS_BYTES" 51
		ok $? "physical: port 0's record does not match port 1's data (negative control)"

		# Unbinding the card while QEMU holds its instances: rmdev signals
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
		[ ! -e "/sys/bus/mdev/devices/$u0" ] && [ ! -e "/sys/bus/mdev/devices/$u1" ] &&
			[ ! -e "/sys/bus/mdev/devices/$u2" ] && [ ! -e "$SUPP/$bdf" ]
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

# physical_unplug: the card leaves the PCI bus (`remove`, as a hot-unplug
# does) while a process holds an instance of it and another instance is
# idle, after libvirt.sh used the card. The removal must ask the holder
# through REQ (vfio-test req lets go when asked, as QEMU does) and complete
# in bounded time, with the parent, its types and its instances gone and
# nothing in the kernel log; a rescan finds the card again as a new device,
# which 8250_pci takes (the override went with the old one), and binding it
# to rmdev the admin's way makes it a parent with its whole pool again.
physical_unplug() {
	local bdf tdir u1 u2 out holder t0 rc n bad
	bdf=$(phys_find "$PHYS_CARD")
	[ -n "$bdf" ] && [ "$(phys_driver "$bdf")" = rmdev ] || return 0
	tdir=$SUPP/$bdf/mdev_supported_types
	u1=$(new_uuid)
	u2=$(new_uuid)
	expect_eq "physical unplug: two instances on the card" \
		"$(write_errno "$u1" "$tdir/rmdev-serial-2/create")/$(write_errno "$u2" "$tdir/rmdev-serial-1/create")" OK/OK
	out=$TOP/tests/out/unplug-req.out
	"$VT" req "/sys/bus/mdev/devices/$u1" >"$out" 2>&1 &
	holder=$!
	for _ in $(seq 50); do grep -q held "$out" 2>/dev/null && break; sleep 0.1; done
	grep -q '^held$' "$out"
	ok $? "physical unplug: a process holds one of them open" "$(cat "$out")"
	n=$(dmesg | wc -l)
	t0=$SECONDS
	rc=$(timeout 60 bash -c ". $TOP/tests/qemu/lib.sh; write_errno 1 $PCI/devices/$bdf/remove")
	expect_eq "physical unplug: removing the card from the PCI bus completes within 60 s" \
		"${rc:-timed out}" OK
	echo "# physical unplug: the removal took $((SECONDS - t0)) s"
	# The holder ends by itself: when asked, or after two minutes.
	wait "$holder"
	grep -q '^req$' "$out"
	ok $? "physical unplug: the holder was asked through its REQ eventfd and let go" "$(cat "$out")"
	[ ! -e "$PCI/devices/$bdf" ] && [ ! -e "$SUPP/$bdf" ] &&
		[ ! -e "/sys/bus/mdev/devices/$u1" ] && [ ! -e "/sys/bus/mdev/devices/$u2" ]
	ok $? "physical unplug: the card, its parent and both instances are gone"
	! mdevctl types 2>&1 | grep -q "$bdf"
	ok $? "physical unplug: mdevctl lists no types on the card any more" "$(mdevctl types 2>&1 | head -n 3)"
	bad=$(dmesg | tail -n +$((n + 1)) | checker_lines)
	[ -z "$bad" ]
	ok $? "physical unplug: no oops, BUG or WARN in the kernel log" "$bad"
	printf '1' >"$PCI/rescan"
	expect_eq "physical unplug: a rescan finds the card again, as 8250_pci's" "$(phys_driver "$bdf")" serial
	phys_bind "$bdf" rmdev
	[ "$(phys_driver "$bdf")" = rmdev ] && [ -d "$SUPP/$bdf" ]
	ok $? "physical unplug: binding it to rmdev again makes it a parent again"
	expect_eq "physical unplug: the parent's pool is whole" "$(phys_avail "$tdir" 2>&1)" 4/2/4
	mdevctl types -p "$bdf" 2>&1 | grep -A4 'rmdev-serial-1' | grep -q 'Available instances: 4'
	ok $? "physical unplug: mdevctl lists the card's types again" "$(mdevctl types -p "$bdf" 2>&1 | head -n 6)"
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
