#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The in-guest test run: load vfio, mdev, mtty and rmdev, then drive both
# parents through sysfs and VFIO, with bad input, and unload. Prints KTAP.
# Runs as root inside the test VM; $1 is the repository's path, $2 and $3
# the second-level guest's kernel and initramfs (nested tests are skipped
# when they are not given). The environment names the kernel tree
# (RMDEV_KDIR, for its KTAP helpers) and the project's venv (RMDEV_VENV,
# for qemu.qmp).

set -u
TOP=$1
L2K=${2:-}
L2I=${3:-}
# shellcheck source=lib.sh
. "$TOP/tests/qemu/lib.sh"
# shellcheck source=nested.sh
. "$TOP/tests/qemu/nested.sh"
# shellcheck source=mdevctl.sh
. "$TOP/tests/qemu/mdevctl.sh"
# shellcheck source=libvirt.sh
. "$TOP/tests/qemu/libvirt.sh"
# shellcheck source=migrate.sh
. "$TOP/tests/qemu/migrate.sh"
# shellcheck source=fuzz.sh
. "$TOP/tests/qemu/fuzz.sh"
# shellcheck source=physical.sh
. "$TOP/tests/qemu/physical.sh"
VT=$TOP/target/release/vfio-test
KO=$TOP/rmdev.ko
SUPP=/sys/class/mdev_bus

ktap_print_header
dmesg -n 1 2>/dev/null || true
mount -t debugfs none /sys/kernel/debug 2>/dev/null || true

check "vfio_iommu_type1 loads" modprobe vfio_iommu_type1
check "iommufd loads" modprobe iommufd
check "mdev loads" modprobe mdev
check "mtty loads" modprobe mtty
check "rmdev loads" insmod "$KO"

# kunit_suite NAME: the KUnit suite NAME, which ran when its module loaded
# (insmod returns after it), as one test of this run whose subtests are the
# suite's cases. Its KTAP comes from debugfs (CONFIG_KUNIT_DEBUGFS): a
# document of one test, the suite, whose lines between the plan and the
# result line become this test's subtest lines. KUnit writes the suite's
# closing diagnostics (its totals) unindented; they are indented here with
# the rest of the subtest.
kunit_suite() {
	local f=/sys/kernel/debug/kunit/$1/results ktap last
	if ! ktap=$(cat "$f" 2>&1) || [ "$(echo "$ktap" | sed -n 2p)" != 1..1 ]; then
		ok 1 "$1" "no KUnit results in $f: $(echo "$ktap" | head -n 2 | tr '\n' ' ')"
		return
	fi
	echo "$ktap" | sed '1,2d;$d;s/^\([^ ]\)/    \1/'
	last=$(echo "$ktap" | tail -n 1)
	[ "$last" = "ok 1 $1" ]
	ok $? "$1" "$last"
}
kunit_suite rmdev_core

# lifecycle PARENT TYPE: create, inspect, open both ways, remove.
lifecycle() {
	local parent=$1 type=$2 tdir u dev before after
	tdir=$SUPP/$parent/mdev_supported_types/$type
	[ -d "$tdir" ]
	ok $? "$type: type directory exists"
	expect_eq "$type: device_api is vfio-pci" "$(cat "$tdir/device_api")" vfio-pci
	[ -n "$(cat "$tdir/name")" ]
	ok $? "$type: name is set"
	before=$(cat "$tdir/available_instances")
	u=$(new_uuid)
	expect_eq "$type: create" "$(write_errno "$u" "$tdir/create")" OK
	dev=/sys/bus/mdev/devices/$u
	[ -d "$dev" ]
	ok $? "$type: instance appears on the mdev bus"
	[ -e "$dev/iommu_group" ]
	ok $? "$type: instance has an iommu_group"
	expect_eq "$type: mdev_type link points at the type" \
		"$(readlink -f "$dev/mdev_type")" "$(readlink -f "$tdir")"
	after=$(cat "$tdir/available_instances")
	expect_eq "$type: available_instances goes down by one" "$after" $((before - 1))
	local ref=""
	[ "$parent" = mtty ] && ref=--reference=mtty
	renumber < <("$VT" ${ref:+"$ref"} check group "$dev")
	renumber < <("$VT" ${ref:+"$ref"} check cdev "$dev")
	if [ "$parent" = rmdev ]; then
		grep -q '^port0 ' "$dev/rmdev/state"
		ok $? "$type: per-instance state attribute reads" "$(cat "$dev/rmdev/state" 2>&1)"
		[ -n "$(cat "$tdir/description")" ]
		ok $? "$type: description is set"
	fi
	expect_eq "$type: remove" "$(write_errno 1 "$dev/remove")" OK
	[ ! -e "$dev" ]
	ok $? "$type: instance is gone after remove"
	expect_eq "$type: available_instances is back" "$(cat "$tdir/available_instances")" "$before"
	expect_eq "$type: a second remove finds nothing (ENOENT)" "$(write_errno 1 "$dev/remove")" ENOENT
}

lifecycle mtty mtty-2
lifecycle rmdev rmdev-serial-1
lifecycle rmdev rmdev-serial-2
lifecycle rmdev rmdev-pcie-serial-1

# Bad input on rmdev's create.
T1=$SUPP/rmdev/mdev_supported_types/rmdev-serial-1
T2=$SUPP/rmdev/mdev_supported_types/rmdev-serial-2
expect_eq "malformed UUID is EINVAL" "$(write_errno not-a-uuid "$T1/create")" EINVAL
u=$(new_uuid)
expect_eq "short UUID is EINVAL" "$(write_errno "${u:0:35}" "$T1/create")" EINVAL
expect_eq "long UUID is EINVAL" "$(write_errno "${u}00" "$T1/create")" EINVAL
expect_eq "UUID with a bad digit is EINVAL" "$(write_errno "${u:0:35}g" "$T1/create")" EINVAL
expect_eq "create with the UUID" "$(write_errno "$u" "$T1/create")" OK
expect_eq "duplicate UUID is EEXIST" "$(write_errno "$u" "$T2/create")" EEXIST
write_errno 1 "/sys/bus/mdev/devices/$u/remove" >/dev/null

# Exhaust the pool with two-port instances, then one more of each type.
pool_uuids=()
n=$(cat "$T2/available_instances")
for _ in $(seq "$n"); do
	u=$(new_uuid)
	[ "$(write_errno "$u" "$T2/create")" = OK ] && pool_uuids+=("$u")
done
expect_eq "the pool holds available_instances two-port instances" "${#pool_uuids[@]}" "$n"
expect_eq "an exhausted pool shows 0 available" "$(cat "$T2/available_instances")/$(cat "$T1/available_instances")" 0/0
expect_eq "create on an exhausted pool is ENOSPC" "$(write_errno "$(new_uuid)" "$T1/create")" ENOSPC
for u in "${pool_uuids[@]}"; do write_errno 1 "/sys/bus/mdev/devices/$u/remove" >/dev/null; done
POOL=$(cat /sys/module/rmdev/parameters/ports 2>/dev/null || echo 24)
expect_eq "the pool refills after removes" "$(cat "$T1/available_instances")" "$POOL"

# Concurrent creates and removes keep available_instances exact.
(
	for _ in $(seq 20); do
		u=$(new_uuid)
		write_errno "$u" "$T1/create" >/dev/null && write_errno 1 "/sys/bus/mdev/devices/$u/remove" >/dev/null
	done
) &
(
	for _ in $(seq 20); do
		u=$(new_uuid)
		write_errno "$u" "$T2/create" >/dev/null && write_errno 1 "/sys/bus/mdev/devices/$u/remove" >/dev/null
	done
) &
wait
expect_eq "available_instances is exact after concurrent create/remove" "$(cat "$T1/available_instances")" "$POOL"

# The writable per-instance attribute.
u=$(new_uuid)
write_errno "$u" "$T1/create" >/dev/null
A=/sys/bus/mdev/devices/$u/rmdev/loopback
expect_eq "loopback attribute defaults to 1" "$(cat "$A")" 1
expect_eq "loopback takes 0" "$(write_errno 0 "$A")/$(cat "$A")" OK/0
expect_eq "loopback refuses 2 with EINVAL" "$(write_errno 2 "$A")/$(cat "$A")" EINVAL/0
[ "$(write_errno 1 "${A%/*}/state")" != OK ]
ok $? "state is read-only"
write_errno 1 "/sys/bus/mdev/devices/$u/remove" >/dev/null

mdevctl_tests

# Guest-side bad input on every offset and size; the device must survive.
u=$(new_uuid)
write_errno "$u" "$T2/create" >/dev/null
renumber < <("$VT" abuse "/sys/bus/mdev/devices/$u")
expect_eq "the abused instance removes cleanly" "$(write_errno 1 "/sys/bus/mdev/devices/$u/remove")" OK
u=$(new_uuid)
write_errno "$u" "$SUPP/rmdev/mdev_supported_types/rmdev-pcie-serial-1/create" >/dev/null
renumber < <("$VT" abuse "/sys/bus/mdev/devices/$u" | sed 's/^\(\(not \)\?ok - \)/\1pcie: /')
expect_eq "the abused PCI Express instance removes cleanly" "$(write_errno 1 "/sys/bus/mdev/devices/$u/remove")" OK

# Migration v2: the state machine on one card, its state moved to a second
# of the same type, bad streams (one into a one-port card) and aborts; for
# rmdev and for mtty.
mig_tests() {
	local parent=$1 two=$2 one=$3 ref=$4 a b c
	a=$(new_uuid) b=$(new_uuid) c=$(new_uuid)
	write_errno "$a" "$SUPP/$parent/mdev_supported_types/$two/create" >/dev/null
	write_errno "$b" "$SUPP/$parent/mdev_supported_types/$two/create" >/dev/null
	write_errno "$c" "$SUPP/$parent/mdev_supported_types/$one/create" >/dev/null
	renumber < <("$VT" ${ref:+"$ref"} mig /sys/bus/mdev/devices/{"$a","$b","$c"} | sed "s/^\(\(not \)\?ok - \)/\1$parent: /")
	for u in "$a" "$b" "$c"; do
		expect_eq "$parent: migration instance $u removes cleanly" \
			"$(write_errno 1 "/sys/bus/mdev/devices/$u/remove")" OK
	done
}
mig_tests rmdev rmdev-serial-2 rmdev-serial-1 ""
mig_tests mtty mtty-2 mtty-1 --reference=mtty
migrate_tests rmdev rmdev-serial-2
migrate_tests mtty mtty-2

# REQ: removing an instance userspace holds signals its REQ eventfd; a
# holder that honours it (as QEMU does) closes the device and the remove
# completes. mtty has no request op, so its remove would wait for ever.
u=$(new_uuid)
write_errno "$u" "$T1/create" >/dev/null
"$VT" req "/sys/bus/mdev/devices/$u" >"$TOP/tests/out/req.out" 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q held "$TOP/tests/out/req.out" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s%N)
expect_eq "removing a held instance completes (REQ)" \
	"$(timeout 60 bash -c ". $TOP/tests/qemu/lib.sh; write_errno 1 /sys/bus/mdev/devices/$u/remove")" OK
echo "# remove of a held instance took $((($(date +%s%N) - t0) / 1000000)) ms"
wait "$holder"
grep -q '^req$' "$TOP/tests/out/req.out"
ok $? "the holder was asked through its REQ eventfd" "$(cat "$TOP/tests/out/req.out")"

# A second-level guest drives rmdev's and mtty's ports through QEMU.
if [ -n "$L2K" ]; then
	nested_tests "$L2K" "$L2I"
fi

# rmdev's PCI driver on the VM's serial card (scripts/vm.sh --card): the
# physical parent, data through all four of its ports from a second-level guest,
# unbind under QEMU, rmmod with the card bound. It leaves the card bound to
# rmdev for libvirt, and gives it back to 8250_pci after.
physical_tests

# libvirt's node devices and a libvirt domain with an rmdev hostdev, on the
# virtual parent and on the card's.
libvirt_tests "$L2K" "$L2I"
# The card removed from the PCI bus while an instance of it is held, then
# found again by a rescan and bound to rmdev again; then back to 8250_pci.
physical_unplug
physical_release

# A short fixed-seed slice of the device-fd fuzzer on every type (`make
# fuzz` runs 10^6 calls per type with a new seed).
fuzz_tests 20000 1

# Fault injection on every entry point userspace reaches (vfio-test faults,
# tools/vfio-test/src/failnth.rs): each call again with its n-th allocation
# failing, n = 1, 2, ..., on every rmdev type and on mtty as the reference.
# The tool sets the fault-injection knobs in debugfs and restores them. Its
# exit status tells a run that ended (0 or 1) from one that hung or died.
faults_tests() {
	local t0 rc out=$TOP/tests/out/faults.out types=()
	t0=$(date +%s)
	for t in rmdev-serial-1 rmdev-serial-2 rmdev-pcie-serial-1; do
		types+=("$SUPP/rmdev/mdev_supported_types/$t")
	done
	timeout 1200 "$VT" faults "${types[@]}" >"$out" 2>&1
	rc=$?
	renumber <"$out"
	[ "$rc" -le 1 ]
	ok $? "faults: the rmdev run ends (no hang, no crash)" "exit status $rc: $(tail -n 3 "$out")"
	timeout 600 "$VT" --reference=mtty faults "$SUPP/mtty/mdev_supported_types/mtty-2" >"$out" 2>&1
	rc=$?
	renumber <"$out"
	[ "$rc" -le 1 ]
	ok $? "faults: the mtty run ends (no hang, no crash)" "exit status $rc: $(tail -n 3 "$out")"
	echo "# fault injection took $(($(date +%s) - t0)) s"
}
# The fault-injection framework is in the debug kernel only (make
# test-debug); the test kernel has no fail-nth.
if [ -e /proc/thread-self/fail-nth ]; then
	faults_tests
else
	skip "faults: fault injection on every entry point" "this kernel has no fault injection (make test-debug runs it)"
fi

# Leak check while the module is loaded (its symbols resolve in reports).
if [ -w /sys/kernel/debug/kmemleak ]; then
	expect_eq "kmemleak finds no rmdev allocation leaked" "$(kmemleak_scan rmdev)" 0
fi

# rmmod with instances and no open fds removes them all.
u1=$(new_uuid)
u2=$(new_uuid)
write_errno "$u1" "$T1/create" >/dev/null
write_errno "$u2" "$T2/create" >/dev/null
check "rmmod rmdev with two instances succeeds" rmmod rmdev
[ ! -e "/sys/bus/mdev/devices/$u1" ] && [ ! -e "/sys/bus/mdev/devices/$u2" ] && [ ! -e "$SUPP/rmdev" ]
ok $? "rmmod removed the instances and the parent"

# rmmod while a VFIO fd is open is refused, and works once it closes.
check "rmdev loads again" insmod "$KO"
u=$(new_uuid)
write_errno "$u" "$T1/create" >/dev/null
fifo=$(mktemp -u)
mkfifo "$fifo"
"$VT" hold "/sys/bus/mdev/devices/$u" <"$fifo" >"$fifo.out" &
holder=$!
exec 9>"$fifo"
for _ in $(seq 50); do grep -q held "$fifo.out" 2>/dev/null && break; sleep 0.1; done
grep -q held "$fifo.out"
ok $? "a process holds the device open"
rmmod rmdev 2>/dev/null
ok $((! $?)) "rmmod rmdev with an open device fd is refused"
[ -e "/sys/bus/mdev/devices/$u" ]
ok $? "the held instance survives the refused rmmod"
exec 9>&-
wait "$holder"
check "rmmod rmdev after the fd closes succeeds" rmmod rmdev
rm -f "$fifo" "$fifo.out"

# The checkers' verdict on the whole run, the boot included. A leak
# anywhere counts (a second scan, after the module is gone, so that an
# object freed late is not reported); its first report is shown.
if [ -w /sys/kernel/debug/kmemleak ]; then
	[ "$(kmemleak_scan)" = 0 ]
	ok $? "kmemleak finds no leak anywhere" "$(head -n 20 /sys/kernel/debug/kmemleak)"
fi
# Lockdep must still be on at the end: the first report, or any taint that
# makes lock debugging unreliable, switches it off silently.
if [ -r /proc/lockdep_stats ]; then
	grep -Eq '^ *debug_locks: +1$' /proc/lockdep_stats
	ok $? "lockdep stayed on for the whole run" "$(grep debug_locks /proc/lockdep_stats)"
fi
# Any oops, BUG, warning or checker report fails the run (lib.sh says which).
bad=$(checker_reports)
[ -z "$bad" ]
ok $? "no oops, BUG, WARN or checker report in the kernel log" "$bad"

finish
