#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the second-level guest's initramfs: static busybox, the static
# l2-serial checker and tests/qemu/l2/init. Output: tests/out/l2-initramfs.cpio.gz

set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$RMDEV_TOP"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release -p l2-serial \
	--target x86_64-unknown-linux-gnu
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,proc,sys,dev,tmp}
cp /bin/busybox "$root/bin/busybox"
cp target/x86_64-unknown-linux-gnu/release/l2-serial "$root/l2-serial"
cp tests/qemu/l2/init "$root/init"
chmod +x "$root/init" "$root/l2-serial"
mkdir -p tests/out
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) >tests/out/l2-initramfs.cpio.gz
