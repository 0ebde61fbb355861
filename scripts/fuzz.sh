#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make fuzz`: the host fuzz targets (tools/host-fuzz; CASES=N cases per
# target, default 10^7), then one boot of the test (debug) kernel that
# fuzzes every rmdev type's device fd with tools/vfio-fuzz
# (tests/qemu/fuzz-guest.sh) and fails on any fuzzer failure, leak, lockdep
# or other checker report. CALLS=N sets the calls per type (default 10^6),
# SEED=S the device fuzzer's seed (random and printed by default). The guest's log is tests/out/fuzz.log, each
# type's fuzzer output tests/out/fuzz-TYPE.log.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$RMDEV_TOP"
CALLS=${CALLS:-1000000}
SEED=${SEED:-}
out=$RMDEV_TOP/tests/out
mkdir -p "$out"

# First the host fuzz targets of the kernel-free code (tools/host-fuzz,
# 10^7 cases per target unless CASES says otherwise; each prints its seed).
log "host fuzz targets (cargo run --release -p host-fuzz)"
cargo run --quiet --release -p host-fuzz -- --target all ${CASES:+--cases "$CASES"}

kdir=$(rmdev_kdir "${RMDEV_KFLAVOUR:-test}")
log "fuzzing every rmdev type's device fd, $CALLS calls each, in the test VM ($(rmdev_accel))"
t0=$SECONDS
"$RMDEV_TOP/scripts/vm.sh" -- \
	"RMDEV_KDIR=$kdir bash $RMDEV_TOP/tests/qemu/fuzz-guest.sh $RMDEV_TOP $CALLS $SEED" |
	tee "$out/fuzz.log"
log "the fuzz VM took $((SECONDS - t0)) s"
grep -h '^vfio-fuzz: type' "$out"/fuzz-*.log || true
python3 "$RMDEV_TOP/tests/qemu/ktap_verdict.py" "$kdir" "$out/fuzz.log" "$out/fuzz-ktap.txt"
