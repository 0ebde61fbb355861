# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the in-guest tests: KTAP output and sysfs writes that report
# the errno the kernel returned. Sourced, never run.

KTAP_N=0
KTAP_FAIL=0
KTAP_TODO=0

ok() { # ok COND-STATUS NAME [DIAG]
	KTAP_N=$((KTAP_N + 1))
	if [ "$1" = 0 ]; then
		echo "ok $KTAP_N $2"
	else
		KTAP_FAIL=$((KTAP_FAIL + 1))
		echo "not ok $KTAP_N $2"
		[ -n "${3:-}" ] && echo "# $3"
	fi
	return 0
}

# check NAME COMMAND...: one test line from a command's exit status.
check() {
	local name=$1 out rc
	shift
	out=$("$@" 2>&1) && rc=0 || rc=$?
	ok "$rc" "$name" "$(echo "$out" | tail -n 3 | tr '\n' ' ')"
}

# Prefix every line of a tool's unnumbered KTAP ("ok - x") with our numbers.
renumber() {
	local line
	while IFS= read -r line; do
		case "$line" in
		"ok - "*) ok 0 "${line#ok - }" ;;
		"not ok - "*"# TODO"*)
			KTAP_N=$((KTAP_N + 1))
			KTAP_TODO=$((KTAP_TODO + 1))
			echo "not ok $KTAP_N ${line#not ok - }"
			;;
		"not ok - "*) ok 1 "${line#not ok - }" ;;
		*) echo "$line" ;;
		esac
	done
}

# write_errno VALUE FILE: writes VALUE (no newline) to FILE with one write()
# and prints the errno name, or OK.
write_errno() {
	local msg
	if msg=$( { printf '%s' "$1" >"$2"; } 2>&1); then
		echo OK
		return
	fi
	case "$msg" in
	*"Invalid argument"*) echo EINVAL ;;
	*"File exists"*) echo EEXIST ;;
	*"No space left on device"*) echo ENOSPC ;;
	*"No such file or directory"*) echo ENOENT ;;
	*"Too many users"*) echo EUSERS ;;
	*"No such device"*) echo ENODEV ;;
	*"Device or resource busy"*) echo EBUSY ;;
	*) echo "other: $msg" ;;
	esac
}

# expect_eq NAME GOT WANT
expect_eq() {
	[ "$2" = "$3" ] && ok 0 "$1" || ok 1 "$1" "got '$2', want '$3'"
}

new_uuid() { cat /proc/sys/kernel/random/uuid; }
