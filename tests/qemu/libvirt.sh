# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0
#
# libvirt against rmdev, sourced by guest-test.sh inside the test VM: the
# node device driver (virsh nodedev-*) manages rmdev instances through
# mdevctl, and the QEMU driver runs a domain with an rmdev instance as an
# mdev hostdev. The second-level guest of nested.sh is that domain. Every
# command here is one an admin would run; the VM's /etc, /var and /tmp are
# writable overlays private to the run, so the configuration written here
# goes away with the VM.
#
# libvirt 11.3 (Debian bookworm-backports) takes a device as a parent of
# mediated devices (capability mdev_types) only when its subsystem is pci,
# css (s390 channel subsystem), matrix (s390 AP matrix) or mtty (the kernel's
# sample driver, named literally in udevGetDeviceType() of
# src/node_device/node_device_udev.c). rmdev's virtual parent is the class
# device /sys/devices/virtual/rmdev/rmdev, subsystem rmdev, so libvirt does
# not list it, and nodedev-create and nodedev-define, which look the parent
# up by its nodedev name (nodeDeviceDefValidateMdev()), refuse it. rmdev's
# physical parent, a serial card bound to rmdev's PCI driver (physical.sh),
# is on the pci bus: libvirt lists it as pci_DDDD_BB_SS_F with the
# mdev_types capability, and every nodedev command works on it. So the
# node-device cycle runs twice: on the card, with every command through
# libvirt, and on the virtual parent, whose devices mdevctl makes after
# libvirt refused them (libvirt then lists every mdev, parent "computer",
# parent_addr rmdev, and starts, stops, autostarts and undefines it through
# mdevctl). Without the card (scripts/vm.sh without --card, or an rmdev.ko
# without the PCI driver) the four checks that need a parent nodedev are
# TODO on the virtual parent, with libvirt's message. The domain has an
# instance of each parent when there is a card.

LV_URI=qemu:///system
LV_DOM=rmdev-l2

lvirsh() { virsh -c "$LV_URI" "$@"; }

# lv_poll SECONDS COMMAND...: runs COMMAND every half second until it
# succeeds or the time is up.
lv_poll() {
	local n=$(($1 * 2))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" && return 0
		sleep 0.5
		n=$((n - 1))
	done
	return 1
}

# lv_listed NAME OPTIONS...: libvirt lists the node device NAME.
lv_listed() {
	local name=$1
	shift
	lvirsh nodedev-list "$@" 2>/dev/null | grep -qx "$name"
}

lv_not_listed() { ! lv_listed "$@"; }

# lv_make VERB NAME UUID TYPE PARENT FALLBACK...: test line NAME for
# `virsh nodedev-VERB` (create or define) of an mdev of TYPE under PARENT. When
# libvirt refuses the parent (see the top of this file) FALLBACK (an mdevctl
# command) makes the device, and the line is TODO with libvirt's message, or,
# when the card's parent passed the same check (LV_CARD set), a pass that
# says libvirt refused the virtual parent as expected.
lv_make() {
	local verb=$1 name=$2 u=$3 type=$4 parent=$5 xml out rc
	shift 5
	xml=/tmp/libvirt-mdev-$u.xml
	cat >"$xml" <<-EOF
		<device>
		  <parent>$parent</parent>
		  <capability type='mdev'>
		    <type id='$type'/>
		    <uuid>$u</uuid>
		  </capability>
		</device>
	EOF
	out=$(lvirsh "nodedev-$verb" "$xml" 2>&1) && rc=0 || rc=$?
	rm -f "$xml"
	if [ $rc = 0 ]; then
		ok 0 "$name"
	elif echo "$out" | grep -q "invalid parent device '$parent'"; then
		if [ -n "$LV_CARD" ]; then
			ok 0 "$name: libvirt refuses the virtual parent as udevGetDeviceType() decides"
		else
			todo "$name" "$(echo "$out" | grep -m1 'invalid parent')"
		fi
		"$@"
	else
		ok 1 "$name" "$out"
	fi
}

lv_shut_off() { [ "$(lvirsh domstate "$LV_DOM" 2>/dev/null)" = "shut off" ]; }

# The daemons. Debian's libvirt-daemon has the monolithic libvirtd only (the
# modular virtqemud and virtnodedevd are not packaged), started here by hand
# as there is no systemd in the VM. /var/log and /var/cache are empty tmpfs
# mounts in the VM, so libvirt's directories there are made first.
libvirt_start() {
	mkdir -p /run/libvirt /var/log/libvirt/qemu /var/cache/libvirt/qemu /var/lib/libvirt/qemu
	# The QEMU driver's settings for this VM:
	# - QEMU runs as root: the second-level kernel is under /root, which the
	#   libvirt-qemu user cannot enter, and the root file system is a
	#   read-only share, so libvirt must neither chown files for QEMU
	#   (dynamic_ownership) nor record their owners in xattrs (remember_owner).
	# - No security driver: the VM's kernel has no AppArmor or SELinux.
	# - No private /dev per domain (namespaces) and no cgroups: QEMU uses the
	#   VM's /dev directly, and there is no systemd to hand out cgroups.
	# - QEMU's output goes to a plain log file, without virtlogd.
	cat >/etc/libvirt/qemu.conf <<-'EOF'
		user = "root"
		group = "root"
		dynamic_ownership = 0
		remember_owner = 0
		security_driver = "none"
		namespaces = []
		cgroup_controllers = []
		stdio_handler = "file"
	EOF
	libvirtd --daemon --pid-file /run/libvirtd.pid
	lv_poll 60 test -S /run/libvirt/libvirt-sock
}

libvirt_stop() {
	local pid
	pid=$(cat /run/libvirtd.pid 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null
	lv_poll 30 eval "! kill -0 $pid 2>/dev/null"
}

# lv_nodedev TAG ADDR: node devices on the parent at ADDR (rmdev, or the
# card's PCI address): the parent, a transient device, a persistent one.
# TAG prefixes the test names.
lv_nodedev() {
	local tag=$1 addr=$2 out psys parent name u
	# The parent and its types.
	psys=$(readlink -f "/sys/class/mdev_bus/$addr")
	parent=""
	for name in $(lvirsh nodedev-list --cap mdev_types 2>/dev/null); do
		lvirsh nodedev-dumpxml "$name" 2>/dev/null | grep -q "<path>$psys</path>" && parent=$name
	done
	if [ -n "$parent" ]; then
		ok 0 "${tag}virsh nodedev-list --cap mdev_types lists rmdev's parent ($parent)"
		out=$(lvirsh nodedev-dumpxml "$parent" 2>&1)
		echo "$out" | grep -q "<type id='rmdev-serial-1'>" &&
			echo "$out" | grep -A4 "<type id='rmdev-serial-2'>" | grep -q '<availableInstances>'
		ok $? "${tag}virsh nodedev-dumpxml of the parent lists both types with availableInstances" \
			"$(echo "$out" | tr -s ' \n' ' ' | head -c 300)"
	elif [ -n "$tag" ]; then
		ok 1 "${tag}virsh nodedev-list --cap mdev_types lists rmdev's parent" "no nodedev has the path $psys"
		parent=pci_${addr//[:.]/_}
	elif [ -n "$LV_CARD" ]; then
		# The card's parent passed these; libvirt takes no virtual parent.
		parent=rmdev_rmdev
	else
		todo "virsh nodedev-list --cap mdev_types lists rmdev's parent" \
			"libvirt lists mdev parents of subsystems pci, css, matrix and mtty only; $psys is subsystem rmdev"
		todo "virsh nodedev-dumpxml of the parent lists both types with availableInstances" \
			"no nodedev for the parent"
		# The name libvirt would give it, like mtty_mtty for mtty.
		parent=rmdev_rmdev
	fi

	# A transient device from XML. Without a parent nodedev libvirt refuses
	# the XML, and mdevctl starts the device; libvirt destroys it either way.
	u=$(new_uuid)
	name=mdev_${u//-/_}_${addr//[:.]/_}
	lv_make create "${tag}virsh nodedev-create makes a transient rmdev-serial-1 device" \
		"$u" rmdev-serial-1 "$parent" mdevctl start -u "$u" -p "$addr" -t rmdev-serial-1
	[ -d "/sys/bus/mdev/devices/$u" ]
	ok $? "${tag}the transient device is on the mdev bus"
	lv_poll 20 lv_listed "$name" --cap mdev
	ok $? "${tag}virsh nodedev-list --cap mdev lists $name" "$(lvirsh nodedev-list --cap mdev 2>&1 | paste -sd' ')"
	out=$(lvirsh nodedev-dumpxml "$name" 2>&1)
	echo "$out" | grep -q "<type id='rmdev-serial-1'/>" && echo "$out" | grep -q "<uuid>$u</uuid>" &&
		echo "$out" | grep -q "<parent_addr>$addr</parent_addr>" && echo "$out" | grep -q '<iommuGroup number='
	ok $? "${tag}virsh nodedev-dumpxml of the device shows its type, UUID, parent and IOMMU group" \
		"$(echo "$out" | tr -s ' \n' ' ' | head -c 300)"
	check "${tag}virsh nodedev-destroy the transient device" lvirsh nodedev-destroy "$name"
	[ ! -e "/sys/bus/mdev/devices/$u" ]
	ok $? "${tag}the destroyed device is gone from the mdev bus"
	lv_poll 20 lv_not_listed "$name" --all
	ok $? "${tag}libvirt no longer lists the destroyed transient device"

	# A persistent device: defined, started, marked autostart, stopped and
	# undefined. libvirt keeps definitions in mdevctl (/etc/mdevctl.d).
	u=$(new_uuid)
	name=mdev_${u//-/_}_${addr//[:.]/_}
	lv_make define "${tag}virsh nodedev-define defines a persistent rmdev-serial-2 device" \
		"$u" rmdev-serial-2 "$parent" mdevctl define -u "$u" -p "$addr" -t rmdev-serial-2
	lv_poll 20 lv_listed "$name" --inactive --cap mdev
	ok $? "${tag}virsh nodedev-list --inactive lists the defined device" \
		"$(lvirsh nodedev-list --inactive 2>&1 | paste -sd' ')"
	check "${tag}virsh nodedev-start" lvirsh nodedev-start "$name"
	[ -d "/sys/bus/mdev/devices/$u" ] &&
		[ "$(basename "$(readlink -f "/sys/bus/mdev/devices/$u/mdev_type")")" = rmdev-serial-2 ]
	ok $? "${tag}the started device is on the mdev bus with its type"
	check "${tag}virsh nodedev-autostart" lvirsh nodedev-autostart "$name"
	out=$(lvirsh nodedev-info "$name" 2>&1)
	echo "$out" | grep -Eq 'Persistent: +yes' && echo "$out" | grep -Eq 'Autostart: +yes' &&
		echo "$out" | grep -Eq 'Active: +yes'
	ok $? "${tag}virsh nodedev-info shows it active, persistent and autostarted" "$(echo "$out" | tr -s ' \n' ' ')"
	mdevctl list -d | grep -q "$u $addr rmdev-serial-2 auto"
	ok $? "${tag}mdevctl holds the definition with start=auto" "$(mdevctl list -d)"
	lv_listed "$name" --all
	ok $? "${tag}virsh nodedev-list --all lists it"
	check "${tag}virsh nodedev-destroy the persistent device" lvirsh nodedev-destroy "$name"
	[ ! -e "/sys/bus/mdev/devices/$u" ]
	ok $? "${tag}the stopped device is gone from the mdev bus"
	lv_poll 20 lv_listed "$name" --inactive
	ok $? "${tag}the stopped device stays defined (nodedev-list --inactive)"
	check "${tag}virsh nodedev-undefine" lvirsh nodedev-undefine "$name"
	lv_poll 20 lv_not_listed "$name" --all
	ok $? "${tag}the undefined device is no longer listed" "$(lvirsh nodedev-list --all --cap mdev 2>&1 | paste -sd' ')"
	! mdevctl list -d | grep -q "$u"
	ok $? "${tag}mdevctl no longer holds the definition"
}

# libvirt_tests L2KERNEL L2INITRD
libvirt_tests() {
	local l2k=$1 l2i=$2 t0 out u uc xml log t1 tests hostdevs=""
	t0=$SECONDS

	libvirt_start
	ok $? "libvirtd starts" "$(tail -n 3 /var/log/libvirt/libvirtd.log 2>/dev/null | tr '\n' ' ')"
	out=$(lvirsh version 2>&1)
	ok $? "virsh connects to $LV_URI" "$out"
	echo "# $(echo "$out" | grep -E 'Using library|Running hypervisor' | sed 's/.*: //' | paste -sd, | sed 's/,/, /')"

	# The card, when physical.sh left it bound to rmdev.
	LV_CARD=$(phys_find "$PHYS_CARD")
	[ -n "$LV_CARD" ] && [ "$(phys_driver "$LV_CARD")" = rmdev ] || LV_CARD=""
	echo "# libvirt lists these mdev_types parents: $(lvirsh nodedev-list --cap mdev_types 2>/dev/null | grep . | paste -sd' ')"
	if [ -n "$LV_CARD" ]; then
		lv_nodedev "card: " "$LV_CARD"
	fi
	lv_nodedev "" rmdev
	echo "# libvirt nodedev tests took $((SECONDS - t0)) s"

	# A domain with a two-port instance: the second-level guest of nested.sh,
	# booted by libvirt (TCG, type 'qemu', as the VM has no KVM) with the
	# instance at guest PCI address 00:04.0. L2's init tests the ports,
	# prints KTAP on its console (the serial port, a file here) and reboots,
	# which <on_reboot>destroy</on_reboot> turns into the domain's end.
	if [ ! -r "$l2k" ] || [ ! -r "$l2i" ]; then
		ok 1 "libvirt L2: kernel and initramfs are there" "$l2k $l2i"
		libvirt_stop
		return
	fi
	u=$(new_uuid)
	mdevctl start -u "$u" -p rmdev -t rmdev-serial-2
	tests=00/04.0:4096:4096
	# With the card, a second hostdev: a two-port instance of the card's
	# (its ports 0 and 1, whose relay keys are 0x50 and 0x51), at 00:05.0.
	if [ -n "$LV_CARD" ]; then
		uc=$(new_uuid)
		mdevctl start -u "$uc" -p "$LV_CARD" -t rmdev-serial-2
		tests=$tests,00/05.0:1024:1024:50
		hostdevs="
		    <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
		      <source>
		        <address uuid='$uc'/>
		      </source>
		      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
		    </hostdev>"
	fi
	log=/tmp/libvirt-l2-console.log
	rm -f "$log"
	xml=/tmp/libvirt-$LV_DOM.xml
	# No USB controller and no balloon: only the serial port and the hostdev.
	cat >"$xml" <<-EOF
		<domain type='qemu'>
		  <name>$LV_DOM</name>
		  <memory unit='MiB'>128</memory>
		  <vcpu>1</vcpu>
		  <os>
		    <type arch='x86_64' machine='q35'>hvm</type>
		    <kernel>$l2k</kernel>
		    <initrd>$l2i</initrd>
		    <cmdline>console=ttyS0 quiet panic=-1 8250.nr_uarts=8 l2.tests=$tests</cmdline>
		  </os>
		  <cpu mode='maximum'/>
		  <on_poweroff>destroy</on_poweroff>
		  <on_reboot>destroy</on_reboot>
		  <on_crash>destroy</on_crash>
		  <devices>
		    <controller type='usb' model='none'/>
		    <memballoon model='none'/>
		    <serial type='file'>
		      <source path='$log'/>
		      <target port='0'/>
		    </serial>
		    <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
		      <source>
		        <address uuid='$u'/>
		      </source>
		      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
		    </hostdev>$hostdevs
		  </devices>
		</domain>
	EOF
	check "virsh define the L2 domain" lvirsh define "$xml"
	t1=$SECONDS
	check "virsh start the L2 domain" lvirsh start "$LV_DOM"
	grep -q "sysfsdev.*/sys/bus/mdev/devices/$u" "/var/log/libvirt/qemu/$LV_DOM.log"
	ok $? "libvirt hands QEMU the instance as a vfio-pci sysfsdev"
	# Under nested TCG on a busy host this takes up to about 5 minutes.
	lv_poll 600 grep -q '^# L2 done' "$log"
	ok $? "libvirt L2: the guest ran its tests" "$(tail -n 3 "$log" 2>/dev/null | tr '\n' ' ')"
	echo "# libvirt L2 reached the end of its tests $((SECONDS - t1)) s after virsh start"
	lv_poll 120 lv_shut_off
	ok $? "libvirt L2: the domain stops by itself when the guest reboots" \
		"$(lvirsh domstate --reason "$LV_DOM" 2>&1) $(tail -n 2 "/var/log/libvirt/qemu/$LV_DOM.log" | tr '\n' ' ')"
	echo "# libvirt L2 domain ran $((SECONDS - t1)) s"
	# The whole console stays with the run's output, for a failure's oops.
	cp "$log" "$TOP/tests/out/libvirt-l2-console.log" 2>/dev/null
	renumber < <(grep -E '^(#|(not )?ok - )' "$log" | tr -d '\r' | sed 's/^# /# libvirt /; s/^\(\(not \)\{0,1\}ok - \)/\1libvirt /')
	grep -q '^ok - L2 device 00:04.0 has 2 serial ports' "$log"
	ok $? "libvirt L2: the guest found the instance's 2 ports at 00:04.0"
	if [ -n "$LV_CARD" ]; then
		grep -q "sysfsdev.*/sys/bus/mdev/devices/$uc" "/var/log/libvirt/qemu/$LV_DOM.log"
		ok $? "libvirt L2: libvirt hands QEMU the card's instance too"
		[ "$(tr -d '\r' <"$log" | grep -cE '^ok - L2 ttyS[0-9]+: 1024 bytes in writes of 1024 come back XOR 0x5[01] intact')" = 2 ] &&
			grep -q '^ok - L2 device 00:05.0 has 2 serial ports' "$log"
		ok $? "libvirt L2: the card's instance carried 1024 bytes out and back on both its ports"
	fi
	check "virsh undefine the L2 domain" lvirsh undefine "$LV_DOM"
	check "virsh nodedev-destroy the domain's instance" lvirsh nodedev-destroy "mdev_${u//-/_}_rmdev"
	if [ -n "$LV_CARD" ]; then
		check "virsh nodedev-destroy the domain's card instance" \
			lvirsh nodedev-destroy "mdev_${uc//-/_}_${LV_CARD//[:.]/_}"
	fi
	rm -f "$xml"

	libvirt_stop
	ok $? "libvirtd stops"
	echo "# libvirt tests took $((SECONDS - t0)) s"
}
