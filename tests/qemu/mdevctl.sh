# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0
#
# mdevctl against rmdev, sourced by guest-test.sh inside the test VM (the
# VM's /etc is a writable overlay, so mdevctl's /etc/mdevctl.d is private to
# the run). Every command here is one the admin guide shows.

mdevctl_tests() {
	local u ua out started=()
	out=$(mdevctl types 2>&1)
	echo "$out" | grep -q 'rmdev-serial-2' && echo "$out" | grep -q 'Device API: vfio-pci'
	ok $? "mdevctl types lists rmdev's types" "$(echo "$out" | head -n 5 | tr '\n' ' ')"
	echo "$out" | grep -A4 'rmdev-serial-1' | grep -q "Available instances: $POOL"
	ok $? "mdevctl types shows available instances"
	echo "$out" | grep -A4 'rmdev-serial-1' | grep -q 'Description: 16550A'
	ok $? "mdevctl types shows the description"

	u=$(new_uuid)
	check "mdevctl define a persistent two-port device" mdevctl define -u "$u" -p rmdev -t rmdev-serial-2
	check "mdevctl modify adds the loopback attribute" \
		mdevctl modify -u "$u" --addattr=rmdev/loopback --value=0
	mdevctl list -d | grep -q "$u rmdev rmdev-serial-2"
	ok $? "mdevctl list -d shows the definition" "$(mdevctl list -d)"
	check "mdevctl start" mdevctl start -u "$u"
	expect_eq "the started device has the attribute mdevctl wrote" \
		"$(cat "/sys/bus/mdev/devices/$u/rmdev/loopback" 2>&1)" 0
	mdevctl list | grep -q "$u rmdev rmdev-serial-2"
	ok $? "mdevctl list shows the running device" "$(mdevctl list)"
	mdevctl list --dumpjson | grep -q '"mdev_type": "rmdev-serial-2"'
	ok $? "mdevctl list --dumpjson has the device" "$(mdevctl list --dumpjson | head -c 300)"
	check "mdevctl stop" mdevctl stop -u "$u"
	[ ! -e "/sys/bus/mdev/devices/$u" ]
	ok $? "the stopped device is gone"
	check "mdevctl undefine" mdevctl undefine -u "$u"
	! mdevctl list -d 2>/dev/null | grep -q "$u"
	ok $? "the undefined device is no longer listed"

	# More starts than the pool allows: the extra one fails with a message,
	# the others keep running.
	for _ in $(seq $((POOL / 2))); do
		u=$(new_uuid)
		mdevctl start -u "$u" -p rmdev -t rmdev-serial-2 >/dev/null 2>&1 && started+=("$u")
	done
	expect_eq "mdevctl starts as many devices as the pool holds" "${#started[@]}" $((POOL / 2))
	out=$(mdevctl start -u "$(new_uuid)" -p rmdev -t rmdev-serial-1 2>&1)
	rc=$?
	[ $rc != 0 ] && [ -n "$out" ]
	ok $? "mdevctl start beyond the pool fails with a message" "rc $rc: $out"
	echo "# mdevctl said: $out"
	expect_eq "the devices started before keep running" \
		"$(mdevctl list | grep -c 'rmdev rmdev-serial-2')" "${#started[@]}"
	for u in "${started[@]}"; do mdevctl stop -u "$u"; done

	# An --auto device comes up by itself when rmdev registers (udev's
	# MDEV_STATE=registered event runs mdevctl start-parent-mdevs). Debian
	# 12's mdevctl 1.2.0 installs /usr/bin/mdevctl but its udev rule runs
	# /usr/sbin/mdevctl; the link is the fix an admin applies (see the admin
	# guide), made here in the VM's writable /usr overlay.
	[ -e /usr/sbin/mdevctl ] || ln -s /usr/bin/mdevctl /usr/sbin/mdevctl
	ua=$(new_uuid)
	check "mdevctl define --auto" mdevctl define -u "$ua" -p rmdev -t rmdev-serial-1 --auto
	rmmod rmdev && insmod "$KO"
	for _ in $(seq 50); do [ -e "/sys/bus/mdev/devices/$ua" ] && break; sleep 0.2; done
	[ -e "/sys/bus/mdev/devices/$ua" ]
	ok $? "the --auto device starts when rmdev loads" "$(pgrep -a udevd || echo no udevd)"
	mdevctl stop -u "$ua" >/dev/null 2>&1
	mdevctl undefine -u "$ua" >/dev/null 2>&1
}
