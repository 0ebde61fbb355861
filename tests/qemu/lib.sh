# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the in-guest tests: KTAP output through the kernel tree's
# kselftest helpers, and sysfs writes that report the errno the kernel
# returned. Sourced, never run.
#
# RMDEV_KDIR is the kernel tree the VM boots (scripts/vm-test.sh sets it);
# the guest sees the host's root file system read-only, so the tree is at
# the same path inside.

# The path is known only at run time, outside this repository.
# shellcheck source=/dev/null
. "${RMDEV_KDIR:?RMDEV_KDIR, the kernel tree, is not set}/tools/testing/selftests/kselftest/ktap_helpers.sh"

# Results with the TODO directive: the reference driver's known deviations
# (kselftest counts pass, fail, xfail and skip only).
KTAP_CNT_TODO=0

# The kselftest helpers print their arguments unquoted; every wrapper below
# turns off pathname expansion (for its own scope only) so that a test name
# with * or ? in it is printed as it is.

# ok STATUS NAME [DIAG]: one result from an exit status (0 passes); DIAG is
# printed as a diagnostic line when it fails.
ok() {
	local -
	set -f
	if [ "$1" = 0 ]; then
		ktap_test_pass "$2"
	else
		ktap_test_fail "$2"
		[ -z "${3:-}" ] || ktap_print_msg "$3"
	fi
	return 0
}

# with_directive RESULT NAME DIRECTIVE REASON: a result with a directive and
# its reason. ktap_test_skip and ktap_test_xfail take no reason, so the line goes
# through the helpers' own result printer, which numbers it.
with_directive() {
	local -
	set -f
	__ktap_test "$1" "$2" "$3${4:+ $4}"
}

# skip NAME REASON, todo NAME REASON
skip() {
	with_directive ok "$1" SKIP "$2"
	KTAP_CNT_SKIP=$((KTAP_CNT_SKIP + 1))
}
todo() {
	with_directive "not ok" "$1" TODO "$2"
	KTAP_CNT_TODO=$((KTAP_CNT_TODO + 1))
}

# check NAME COMMAND...: one test line from a command's exit status.
check() {
	local name=$1 out rc
	shift
	out=$("$@" 2>&1) && rc=0 || rc=$?
	ok "$rc" "$name" "$(echo "$out" | tail -n 3 | tr '\n' ' ')"
}

# Number a tool's unnumbered KTAP ("ok - x", "not ok - x # TODO why",
# "ok - x # SKIP why") in this run's sequence; other lines pass through.
renumber() {
	local line name
	while IFS= read -r line; do
		case "$line" in
		"ok - "*" # SKIP"*)
			name=${line#ok - }
			skip "${name%% # SKIP*}" "$(directive_reason "$name" SKIP)"
			;;
		"ok - "*) ok 0 "${line#ok - }" ;;
		"not ok - "*" # TODO"*)
			name=${line#not ok - }
			todo "${name%% # TODO*}" "$(directive_reason "$name" TODO)"
			;;
		"not ok - "*) ok 1 "${line#not ok - }" ;;
		*) echo "$line" ;;
		esac
	done
}

# directive_reason TEXT DIRECTIVE: what follows "# DIRECTIVE " in TEXT.
directive_reason() {
	local r=${1#* # "$2"}
	echo "${r# }"
}

# The end of the run: the plan, which only now is known (the tools' output
# decides the count), and kselftest's totals with the TODO count after them.
finish() {
	ktap_set_plan $((KTAP_TESTNO - 1))
	ktap_print_totals
	ktap_print_msg "todo: $KTAP_CNT_TODO"
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
	if [ "$2" = "$3" ]; then
		ok 0 "$1"
	else
		ok 1 "$1" "got '$2', want '$3'"
	fi
}

new_uuid() { cat /proc/sys/kernel/random/uuid; }

# checker_reports: the first lines of the kernel log that report an oops, a
# BUG, a warning or a checker's finding: KASAN and KFENCE ("BUG: KASAN",
# "BUG: KFENCE"), lockdep ("WARNING: possible ...", "INFO:"), UBSAN,
# sleeping in atomic context, hung tasks and soft lockups, kmemleak, and the
# line that says lock debugging was switched off. Empty when there is none.
checker_reports() { dmesg | checker_lines; }

# checker_lines: the same, of the kernel log lines on standard input (a part
# of the log).
checker_lines() {
	grep -E 'BUG:|WARNING:|INFO:|Oops|Call Trace|kernel panic|general protection|UBSAN|KFENCE|rust_panic|blocked for more than|Disabling lock debugging|suspected memory leak' | head -n 5
}

# kmemleak_scan [PATTERN]: scans for leaks twice (an object freed late is
# not reported) and prints how many reports match PATTERN (every report by
# default); prints nothing when kmemleak is not available.
kmemleak_scan() {
	local f=/sys/kernel/debug/kmemleak
	[ -w "$f" ] || return 0
	echo scan >"$f"
	sleep 1
	echo scan >"$f"
	grep -c "${1:-^unreferenced object}" "$f" || true
}
