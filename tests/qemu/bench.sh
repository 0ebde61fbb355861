#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench` inside the VM: one boot, rmdev and mtty side by side, the same
# harness for both and for the machine's floor. $1 is the repository, $2 the
# accelerator QEMU used for this VM, $3 the output directory, $4 the number
# of latency passes (default 1), whose median the table shows, $5 the module
# to load (default the tree's rmdev.ko).

set -u
TOP=$1
ACCEL=$2
OUT=$3
RUNS=${4:-1}
KO=${5:-$TOP/rmdev.ko}
modprobe vfio_iommu_type1 && modprobe mdev && modprobe mtty || exit 1
# The pool is raised to 1000 ports for the lifecycle slope; mtty's is fixed
# at 24.
insmod "$KO" ports=1000 || exit 1
R=$(cat /proc/sys/kernel/random/uuid)
M=$(cat /proc/sys/kernel/random/uuid)
echo "$R" >/sys/class/mdev_bus/rmdev/mdev_supported_types/rmdev-serial-1/create || exit 1
echo "$M" >/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1/create || exit 1
mkdir -p "$OUT"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
# Every phase runs under a timeout, so that a hang says where it was.
timeout $((600 * RUNS)) "$TOP/target/release/vfio-bench" --runs "$RUNS" "$OUT/rows.json" \
	"rmdev=/sys/bus/mdev/devices/$R" "mtty=/sys/bus/mdev/devices/$M" || {
	echo "bench: the latency phase failed or hung (status $?)"
	exit 1
}
echo 1 >"/sys/bus/mdev/devices/$R/remove"
echo 1 >"/sys/bus/mdev/devices/$M/remove"

# Lifecycle: create+remove cycles with N live instances (ns), and slab
# memory per live instance.
VB=$TOP/target/release/vfio-bench
RT=/sys/class/mdev_bus/rmdev/mdev_supported_types/rmdev-serial-1
MT=/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1
life=""
printf '%-38s %21s %21s %8s\n' "create+remove cycle (ns)" "rmdev p50 p99" "mtty p50 p99" "ratio"
for n in 1 8 23 64 999; do
	# Both types in one run, taking turns cycle by cycle.
	both=$(timeout 300 "$VB" lifecycle "$n" 50 "$RT" "$MT" || echo "hung")
	r=$(echo "$both" | sed -n 1p)
	m=$(echo "$both" | sed -n 2p)
	ratio=n/a
	case "$r/$m" in [0-9]*/[0-9]*) ratio=$(echo "scale=2; ${r%% *} / ${m%% *}" | bc) ;; esac
	printf '%-38s %21s %21s %8s\n' "with $n live instances" "$r" "$m" "$ratio"
	life="$life{\"live\": $n, \"rmdev\": \"$r\", \"mtty\": \"$m\"},"
done
# The median of three runs: other kernel activity moves the slab total too.
med3() { for _ in 1 2 3; do timeout 300 "$VB" memory "$1" "$2"; done | sort -n | sed -n 2p; }
mr=$(med3 "$RT" 100)
mr20=$(med3 "$RT" 20)
mm20=$(med3 "$MT" 20)
printf '%-38s %21s %21s\n' "slab bytes per instance (20 live)" "$mr20" "$mm20"
printf '%-38s %21s %21s\n' "slab bytes per instance (100 live)" "$mr" "n/a (pool 24)"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //; s/"/\\"/g')
{
	printf '{\n  "kernel": "%s",\n  "accel": "%s",\n  "cpu": "%s",\n  "vcpus": %s,\n  "date": "%s",\n' \
		"$(uname -r)" "$ACCEL" "$cpu" "$(nproc)" "$stamp"
	printf '  "lifecycle": [%s],\n' "${life%,}"
	printf '  "slab_per_instance": {"rmdev_100": "%s", "rmdev_20": "%s", "mtty_20": "%s"},\n  "results": ' "$mr" "$mr20" "$mm20"
	sed 's/^/  /' "$OUT/rows.json" | sed '1s/^  //'
	printf '}\n'
} >"$OUT/bench-$stamp.json"
rm -f "$OUT/rows.json"
echo "# kernel $(uname -r), accelerator $ACCEL, CPU $cpu, module $KO ($(md5sum <"$KO" | cut -c1-12))"
echo "# results: tests/out/bench/bench-$stamp.json"
