#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench` inside the VM: one boot, rmdev and mtty side by side, the same
# harness for both and for the machine's floor. $1 is the repository, $2 the
# accelerator QEMU used for this VM, $3 the output directory.

set -u
TOP=$1
ACCEL=$2
OUT=$3
modprobe vfio_iommu_type1 && modprobe mdev && modprobe mtty || exit 1
insmod "$TOP/rmdev.ko" || exit 1
R=$(cat /proc/sys/kernel/random/uuid)
M=$(cat /proc/sys/kernel/random/uuid)
echo "$R" >/sys/class/mdev_bus/rmdev/mdev_supported_types/rmdev-serial-1/create || exit 1
echo "$M" >/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1/create || exit 1
mkdir -p "$OUT"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
"$TOP/target/release/vfio-bench" "$OUT/rows.json" rmdev=/sys/bus/mdev/devices/$R mtty=/sys/bus/mdev/devices/$M || exit 1
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //; s/"/\\"/g')
{
	printf '{\n  "kernel": "%s",\n  "accel": "%s",\n  "cpu": "%s",\n  "vcpus": %s,\n  "date": "%s",\n  "results": ' \
		"$(uname -r)" "$ACCEL" "$cpu" "$(nproc)" "$stamp"
	sed 's/^/  /' "$OUT/rows.json" | sed '1s/^  //'
	printf '}\n'
} >"$OUT/bench-$stamp.json"
rm -f "$OUT/rows.json"
echo "# kernel $(uname -r), accelerator $ACCEL, CPU $cpu"
echo "# results: tests/out/bench/bench-$stamp.json"
echo 1 >/sys/bus/mdev/devices/$R/remove
echo 1 >/sys/bus/mdev/devices/$M/remove
