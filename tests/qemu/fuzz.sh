# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0
#
# The device-fd fuzzer (tools/vfio-fuzz) on one new instance of every rmdev
# type, one KTAP result per type. Sourced by guest-test.sh (a short slice
# with a fixed seed) and by fuzz-guest.sh (`make fuzz`); needs lib.sh and
# $TOP, the repository's path.

# fuzz_tests CALLS [SEED]: CALLS calls per type; a random seed (printed)
# without SEED. Each type's full output is in tests/out/fuzz-TYPE.log; the
# summary and the first failures become diagnostic lines.
fuzz_tests() {
	local calls=$1 seed=${2:-} fz=$TOP/target/release/vfio-fuzz tdir type u rc log
	for tdir in /sys/class/mdev_bus/rmdev/mdev_supported_types/*; do
		type=${tdir##*/}
		log=$TOP/tests/out/fuzz-$type.log
		u=$(new_uuid)
		if [ "$(write_errno "$u" "$tdir/create")" != OK ]; then
			ok 1 "fuzz $type: $calls calls" "cannot create an instance"
			continue
		fi
		# A generous bound (100 calls/s), so that a call that never returns
		# ends the test rather than the run.
		timeout -k 10 $((600 + calls / 100)) \
			"$fz" --calls "$calls" ${seed:+--seed "$seed"} "/sys/bus/mdev/devices/$u" >"$log" 2>&1
		rc=$?
		grep -E '^vfio-fuzz: (seed|type|reproduce)' "$log" | sed 's/^/# /'
		ok "$rc" "fuzz $type: $calls calls" "$(grep -m 3 FAIL "$log" || tail -n 3 "$log")"
		expect_eq "fuzz $type: the fuzzed instance removes cleanly" \
			"$(write_errno 1 "/sys/bus/mdev/devices/$u/remove")" OK
	done
}
