# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0
#
# Live migration through QEMU, sourced by guest-test.sh inside the
# first-level VM. A source QEMU holds one serial card instance, a target QEMU
# started with -incoming holds a second of the same type, and `migrate` moves
# the machine over a local socket. The machines run their firmware only
# (SeaBIOS maps the card's I/O BARs and then waits for a boot device): a
# second-level guest kernel would triple the test's time under TCG in TCG,
# and the firmware-only machine still runs, so the migration is live. The
# monitor's I/O port commands stand in for the guest driver: they set line
# registers and leave bytes in a port's receive FIFO on the source, and read
# them back on the target after the move.

# qmp SOCKET COMMAND [ARGUMENTS]: tests/qemu/qmp.py, a client on the qemu.qmp
# package, run by the project venv's python3, which has that package.
qmp() {
	"${RMDEV_VENV:?RMDEV_VENV, the project venv, is not set}/bin/python3" "$TOP/tests/qemu/qmp.py" "$@"
}

# mig_io SOCKET PORT: a byte read from an I/O port through the monitor.
mig_io() {
	qmp "$1" hmp "i /b $2" | sed -n 's/.*= *0x\([0-9a-f]*\).*/0x\1/p' | tr -d '\r'
}

# mig_out SOCKET PORT VALUE
mig_out() {
	qmp "$1" hmp "o /b $2 $3" >/dev/null
}

# mig_qmp_field SOCKET COMMAND FIELD: one top-level field of a QMP return.
mig_qmp_field() {
	qmp "$1" "$2" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$3', ''))"
}

# mig_bar0 SOCKET: the I/O address SeaBIOS gave the card's BAR0, once it has.
mig_bar0() {
	local a
	for _ in $(seq 120); do
		a=$(qmp "$1" hmp "info pci" 2>/dev/null |
			awk '/4348:3253/ { f = 1 } f && /BAR0: I\/O at 0x/ { print $4; exit }')
		case "$a" in
		0x[0-9a-f] | 0x[0-9a-f][0-9a-f] | 0x[0-9a-f][0-9a-f][0-9a-f] | 0x[0-9a-f][0-9a-f][0-9a-f][0-9a-f])
			echo "$a"
			return 0
			;;
		esac
		sleep 0.5
	done
	return 1
}

# migrate_tests PARENT TYPE
migrate_tests() {
	local parent=$1 type=$2 a b d src dst s t io st v
	d=/tmp/mig-$parent
	rm -rf "$d"
	mkdir -p "$d"
	a=$(new_uuid)
	b=$(new_uuid)
	write_errno "$a" "$SUPP/$parent/mdev_supported_types/$type/create" >/dev/null
	write_errno "$b" "$SUPP/$parent/mdev_supported_types/$type/create" >/dev/null
	s=$d/src.qmp
	t=$d/dst.qmp
	local common=(-machine q35 -accel tcg -m 64 -nodefaults -display none -serial none -monitor none)
	qemu-system-x86_64 "${common[@]}" -qmp "unix:$s,server=on,wait=off" \
		-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$a,addr=04.0" >"$d/src.log" 2>&1 &
	src=$!
	qemu-system-x86_64 "${common[@]}" -qmp "unix:$t,server=on,wait=off" \
		-device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$b,addr=04.0" \
		-incoming "unix:$d/mig.sock" >"$d/dst.log" 2>&1 &
	dst=$!
	for _ in $(seq 100); do [ -S "$s" ] && [ -S "$t" ] && break; sleep 0.2; done
	io=$(mig_bar0 "$s")
	ok $? "$parent: QEMU with the card runs its firmware, which maps BAR0" "$(cat "$d/src.log")"
	if [ -z "$io" ]; then
		kill "$src" "$dst" 2>/dev/null
		wait "$src" "$dst" 2>/dev/null
		return
	fi
	local lcr=$((io + 3)) lsr=$((io + 5)) scr=$((io + 7))
	# The guest's view of the source: 8 data bits, two stop bits, parity;
	# a scratch value; two bytes looped back into the receive FIFO.
	mig_out "$s" $lcr 0x1b
	mig_out "$s" $scr 0x5a
	mig_out "$s" "$io" 0x68
	mig_out "$s" "$io" 0x69
	expect_eq "$parent: the source card holds the guest's settings" \
		"$(mig_io "$s" $lcr)/$(mig_io "$s" $scr)/$(($(mig_io "$s" $lsr) & 1))" 0x1b/0x5a/1
	qmp "$s" migrate "{\"uri\": \"unix:$d/mig.sock\"}" >/dev/null
	ok $? "$parent: QEMU accepts the migration (the card offers migration and dirty tracking)" \
		"$(tail -n 3 "$d/src.log" | tr '\n' ' ')"
	st=
	for _ in $(seq 240); do
		st=$(mig_qmp_field "$s" query-migrate status)
		case "$st" in completed | failed | cancelled) break ;; esac
		sleep 0.5
	done
	expect_eq "$parent: migration status is completed" "$st" completed
	qmp "$s" query-migrate | python3 -c '
import json, sys
m = json.load(sys.stdin)
v = m.get("vfio", {}).get("transferred", "n/a")
print("# %s: migration total %s ms, downtime %s ms, vfio device data %s bytes"
      % (sys.argv[1], m.get("total-time"), m.get("downtime"), v))' "$parent"
	for _ in $(seq 60); do
		[ "$(mig_qmp_field "$t" query-status status)" = running ] && break
		sleep 0.5
	done
	expect_eq "$parent: the target runs after the migration" \
		"$(mig_qmp_field "$t" query-status status)" running
	v="$(mig_io "$t" $lcr)/$(mig_io "$t" $scr)/$(($(mig_io "$t" $lsr) & 1))"
	v="$v/$(mig_io "$t" "$io")/$(mig_io "$t" "$io")/$(($(mig_io "$t" $lsr) & 1))"
	expect_eq "$parent: the target card answers with the source's registers and FIFO" \
		"$v" 0x1b/0x5a/1/0x68/0x69/0
	if [ "$parent" = rmdev ]; then
		grep -q 'port0 .* lcr 0x1b' "/sys/bus/mdev/devices/$b/rmdev/state"
		ok $? "$parent: the target instance's state attribute shows the migrated LCR" \
			"$(cat "/sys/bus/mdev/devices/$b/rmdev/state")"
	fi
	qmp "$s" quit >/dev/null 2>&1
	qmp "$t" quit >/dev/null 2>&1
	wait "$src" "$dst"
	for u in "$a" "$b"; do
		expect_eq "$parent: migrated instance $u removes cleanly" \
			"$(write_errno 1 "/sys/bus/mdev/devices/$u/remove")" OK
	done
}
