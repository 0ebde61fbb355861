#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# What `make run` shows inside the VM: rmdev loaded, a two-port instance
# created through sysfs, seen from sysfs and opened over VFIO. With a
# terminal, a shell is left to the user afterwards. $1 is the repository.

set -u
TOP=$1
INTERACTIVE=${2:-0}
modprobe vfio_iommu_type1 && modprobe iommufd && modprobe mdev
insmod "$TOP/rmdev.ko" || exit 1
T=/sys/class/mdev_bus/rmdev/mdev_supported_types/rmdev-serial-2
U=$(cat /proc/sys/kernel/random/uuid)
echo "== rmdev types"
for t in /sys/class/mdev_bus/rmdev/mdev_supported_types/*; do
	printf '%s: %s, device_api %s, available %s\n  %s\n' "$(basename "$t")" "$(cat "$t/name")" \
		"$(cat "$t/device_api")" "$(cat "$t/available_instances")" "$(cat "$t/description")"
done
echo "== echo $U > $T/create"
echo "$U" >"$T/create" || exit 1
D=/sys/bus/mdev/devices/$U
echo "== $D"
ls "$D"
echo "iommu_group -> $(readlink "$D/iommu_group")"
echo "mdev_type   -> $(readlink "$D/mdev_type")"
echo "available_instances now $(cat "$T/available_instances")"
echo "== the instance over VFIO (group + type1 container)"
"$TOP/target/release/vfio-test" check group "$D"
echo "== rmdev/state"
cat "$D/rmdev/state"
if [ "$INTERACTIVE" = 1 ]; then
	echo "== the instance $U is yours; QEMU: -device vfio-pci,sysfsdev=$D"
	echo "== exit the shell to power off"
	export RMDEV_UUID=$U
	bash -i
fi
