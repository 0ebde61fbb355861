#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# What `make run` shows inside the VM: rmdev loaded, a two-port instance
# created through sysfs, seen from sysfs and opened over VFIO, then handed to
# a second-level guest by QEMU, whose 8250 driver loops data through both
# ports. With a terminal, a shell is left to the user afterwards.
# $1 is the repository, $2 1 for interactive, $3 and $4 the second-level
# guest's kernel and initramfs.

set -u
TOP=$1
INTERACTIVE=${2:-0}
L2K=${3:-}
L2I=${4:-}
modprobe vfio_iommu_type1 && modprobe iommufd && modprobe mdev
insmod "$TOP/rmdev.ko" || exit 1
T=/sys/class/mdev_bus/rmdev/mdev_supported_types/rmdev-serial-2
U=$(cat /proc/sys/kernel/random/uuid)
echo "== rmdev types"
for t in /sys/class/mdev_bus/rmdev/mdev_supported_types/*; do
	printf '%s: %s, device_api %s, available %s\n  %s\n' "$(basename "$t")" "$(cat "$t/name")" \
		"$(cat "$t/device_api")" "$(cat "$t/available_instances")" "$(cat "$t/description")"
done
# The physical parent, when the VM has the test serial card (scripts/vm.sh
# --card) and rmdev has its PCI driver: the card moves from 8250_pci to rmdev
# through driver_override, as the admin guide shows.
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor"):$(cat "$d/device")" = 0x1b36:0x0004 ] || continue
	B=$(basename "$d")
	if [ ! -d /sys/bus/pci/drivers/rmdev ]; then
		echo "== the VM has a pci-serial-4x at $B; this rmdev.ko has no PCI driver to mediate it"
		break
	fi
	echo "== echo rmdev > $d/driver_override; unbind from $(basename "$(readlink "$d/driver")"); drivers_probe"
	echo rmdev >"$d/driver_override"
	[ -e "$d/driver" ] && echo "$B" >"$d/driver/unbind"
	echo "$B" >/sys/bus/pci/drivers_probe
	echo "driver -> $(basename "$(readlink "$d/driver")")"
	for t in /sys/class/mdev_bus/"$B"/mdev_supported_types/*; do
		printf '%s (on %s): available %s\n' "$(basename "$t")" "$B" "$(cat "$t/available_instances")"
	done
	break
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
if [ -r "$L2K" ] && [ -r "$L2I" ]; then
	echo "== QEMU (TCG) boots a second-level guest with -device vfio-pci,sysfsdev=$D"
	echo "   (emulation inside emulation: about a minute)"
	qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 128 -display none -nodefaults \
		-no-reboot -serial stdio -kernel "$L2K" -initrd "$L2I" \
		-append "console=ttyS0 quiet panic=-1 8250.nr_uarts=8 l2.tests=00/04.0:4096:4096" \
		-device vfio-pci,sysfsdev="$D",addr=04.0 </dev/null 2>&1 |
		tr -d '\r' | grep -E '^(#|(not )?ok)' | sed 's/^/   L2 | /'
fi
echo "== rmdev/state"
cat "$D/rmdev/state"
if [ "$INTERACTIVE" = 1 ]; then
	echo "== the instance $U is yours; QEMU: -device vfio-pci,sysfsdev=$D"
	echo "== exit the shell to power off"
	export RMDEV_UUID=$U
	bash -i
fi
