#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Fetch and build everything rmdev needs on a fresh Debian 12 machine:
# host packages, the Linux 7.2 source, the rust-src matching the installed
# rustc, bindgen, virtme-ng and qemu.qmp, and a Rust-enabled kernel built
# with LLVM.
# Each step leaves a stamp in the cache, so a second run does nothing.
#
# Usage: scripts/setup.sh [host|tools|kernel|debug-kernel|bench-kernel|uapi|l2|lint|all]   (default: all)

set -euo pipefail
. "$(dirname "$0")/lib.sh"

mkdir -p "$RMDEV_CACHE"/{dl,tools,kernel,apt}

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Host packages. bookworm-backports (made for this release) is allowed on the
# host for QEMU 10.0; newer suites never are.
HOST_PKGS=(flex bison bc libelf-dev libssl-dev cpio kmod make gcc
	clang-19 lld-19 llvm-19 libclang-19-dev busybox-static udev
	python3-venv xz-utils zstd mdevctl shellcheck patch)
# libvirt comes from there too: 11.3 matches that QEMU, and only its build
# ships the node device driver (the mdev support of virsh nodedev-*) as a
# package of its own. tests/qemu/libvirt.sh runs these daemons in the VM.
BPO_PKGS=(qemu-system-x86/bookworm-backports qemu-system-common/bookworm-backports
	qemu-system-data/bookworm-backports seabios/bookworm-backports
	libvirt-daemon/bookworm-backports libvirt-daemon-driver-nodedev/bookworm-backports
	libvirt-daemon-driver-qemu/bookworm-backports libvirt-clients/bookworm-backports)

setup_host() {
	local stamp=$RMDEV_CACHE/host.stamp want
	want="$(printf '%s ' "${HOST_PKGS[@]}" "${BPO_PKGS[@]}")"
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && command -v qemu-system-x86_64 >/dev/null &&
		command -v clang-19 >/dev/null; then
		return
	fi
	log "installing host packages"
	local bpo=/etc/apt/sources.list.d/bookworm-backports.sources
	if [ ! -f "$bpo" ]; then
		as_root tee "$bpo" >/dev/null <<-'EOF'
			Types: deb
			URIs: http://deb.debian.org/debian
			Suites: bookworm-backports
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
	fi
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${HOST_PKGS[@]}" "${BPO_PKGS[@]}" >/dev/null
	echo "$want" >"$stamp"
}

# The private apt tree for trixie-backports and sid (download only).
papt_update() {
	local d=$RMDEV_CACHE/apt
	mkdir -p "$d"/state/lists/partial "$d"/cache/archives/partial
	touch "$d/status"
	cat >"$d/sources.list" <<-'EOF'
		deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main
		deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
		deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
	EOF
	if [ ! -f "$d/updated" ] || [ -n "$(find "$d/updated" -mmin +720)" ]; then
		log "updating the private apt lists (trixie-backports, sid)"
		mapfile -t args < <(papt_args)
		apt-get "${args[@]}" update -qq
		touch "$d/updated"
	fi
}

# Download one architecture-independent package at an exact version.
papt_download() {
	local pkg=$1 ver=$2 out
	mapfile -t args < <(papt_args)
	out=$RMDEV_CACHE/dl
	if ! ls "$out/${pkg}_${ver//:/%3a}"_*.deb >/dev/null 2>&1; then
		(cd "$out" && apt-get "${args[@]}" download "$pkg=$ver" >/dev/null)
	fi
	printf '%s\n' "$out/${pkg}_${ver//:/%3a}"_*.deb | head -n1
}

# All versions of a package the private archive serves, newest first.
papt_versions() {
	mapfile -t args < <(papt_args)
	apt-cache "${args[@]}" madison "$1" | awk -F'|' '{gsub(/ /,"",$2); print $2}' | sort -Vr -u
}

setup_tools() {
	# rust-src matching the installed rustc exactly.
	local rustv
	rustv=$(rustc --version | awk '{print $2}')
	local rsrc=$RMDEV_CACHE/rust-src-$rustv
	if [ ! -d "$rsrc/usr/src/rustc-$rustv/library" ]; then
		papt_update
		local v
		v=$(papt_versions rust-src | grep -E "^${rustv//./\\.}\+" | head -n1 || true)
		[ -n "$v" ] || die "no Debian rust-src package matches rustc $rustv (the kernel needs the exact version); served: $(papt_versions rust-src | tr '\n' ' ')"
		log "fetching rust-src $v"
		local deb
		deb=$(papt_download rust-src "$v")
		rm -rf "$rsrc.tmp" && dpkg-deb -x "$deb" "$rsrc.tmp" && mv "$rsrc.tmp" "$rsrc"
	fi
	ln -sfn "$rsrc/usr/src/rustc-$rustv/library" "$RMDEV_CACHE/rust-lib-src"

	if ! "$RMDEV_CACHE/tools/bin/bindgen" --version 2>/dev/null | grep -q "$RMDEV_BINDGEN_VERSION"; then
		log "building bindgen-cli $RMDEV_BINDGEN_VERSION (about a minute)"
		cargo install -q bindgen-cli --version "$RMDEV_BINDGEN_VERSION" --locked --root "$RMDEV_CACHE/tools"
	fi

	if ! "$RMDEV_CACHE/venv/bin/vng" --version 2>/dev/null | grep -q "$RMDEV_VIRTME_VERSION"; then
		log "installing virtme-ng $RMDEV_VIRTME_VERSION"
		rm -rf "$RMDEV_CACHE/venv"
		python3 -m venv "$RMDEV_CACHE/venv"
		"$RMDEV_CACHE/venv/bin/pip" install -q "virtme-ng==$RMDEV_VIRTME_VERSION"
	fi
	# The QMP client of the VM tests (tests/qemu/qmp.py), in the same venv.
	if [ "$("$RMDEV_CACHE/venv/bin/python3" -c 'import importlib.metadata as m; print(m.version("qemu.qmp"))' 2>/dev/null)" != "$RMDEV_QMP_VERSION" ]; then
		log "installing qemu.qmp $RMDEV_QMP_VERSION"
		"$RMDEV_CACHE/venv/bin/pip" install -q "qemu.qmp==$RMDEV_QMP_VERSION"
	fi
}

# ShellCheck alone, for `make lint`, which may run before the full set-up
# (setup_host installs it too).
setup_lint() {
	command -v shellcheck >/dev/null && return
	log "installing shellcheck"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		shellcheck >/dev/null
}

# The version of the kernel recipe below, part of the cache key.
RECIPE=1

kmake() {
	make -s LLVM="$RMDEV_LLVM" RUST_LIB_SRC="$RMDEV_CACHE/rust-lib-src" "$@"
}

# The kernels, built from Debian's linux-source with kernel/patches applied:
# "test" (rmdev.config), which `make test`, `make run` and `make bench` use,
# and "debug" (rmdev.config plus the checkers of debug.config), which
# `make test-debug` and `make fuzz` use and build on first use only.
kernel_frags() {
	case "$1" in
	test | bench) echo "$RMDEV_TOP/kernel/rmdev.config" ;;
	debug) echo "$RMDEV_TOP/kernel/rmdev.config $RMDEV_TOP/kernel/debug.config" ;;
	*) die "unknown kernel flavour $1" ;;
	esac
}

setup_kernel() {
	local flavour=${1:-test} frags
	read -r -a frags <<<"$(kernel_frags "$flavour")"
	# The cache key: the config fragments' settings (not their comments), the
	# patches, the compilers and the recipe's version (bump RECIPE when
	# build_kernel changes what it produces).
	local key
	key=$( (grep -hE '^(CONFIG_|# CONFIG_)' "${frags[@]}" && cat_patches && echo "recipe $RECIPE" &&
		rustc --version && clang-19 --version | head -n1) | sha256sum | cut -c1-12)

	# Any cached 7.2.x kernel built from the same key is good enough: a new
	# patch release in the archive does not force a rebuild unless asked.
	local kdir=""
	if [ -z "${RMDEV_KERNEL_REFRESH:-}" ]; then
		kdir=$(printf '%s\n' "$RMDEV_CACHE/kernel/linux-$RMDEV_KSERIES".*-"$key" | sort -V | tail -n1)
		[ -n "$kdir" ] && [ -f "$kdir/.rmdev-built" ] || kdir=""
	fi
	if [ -z "$kdir" ]; then
		papt_update
		local v
		v=$(papt_versions "linux-source-$RMDEV_KSERIES" | head -n1)
		[ -n "$v" ] || die "Debian serves no linux-source-$RMDEV_KSERIES"
		local upstream=${v%%-*}
		kdir=$RMDEV_CACHE/kernel/linux-$upstream-$key
		if [ ! -f "$kdir/.rmdev-built" ]; then
			log "fetching linux-source-$RMDEV_KSERIES $v"
			local deb
			deb=$(papt_download "linux-source-$RMDEV_KSERIES" "$v")
			rm -rf "$kdir" "$kdir.x"
			mkdir -p "$kdir.x"
			dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kdir.x" --wildcards '*/linux-source-*.tar.xz'
			tar -xf "$kdir.x"/usr/src/linux-source-*.tar.xz -C "$kdir.x"
			mv "$kdir.x/linux-source-$RMDEV_KSERIES" "$kdir"
			rm -rf "$kdir.x"
			apply_patches "$kdir"
			build_kernel "$kdir" "$flavour" "${frags[@]}"
		fi
	fi
	echo "$kdir" >"$(kdir_file "$flavour")"
	log "$flavour kernel: $kdir"
}

# The project's kernel patches (kernel/patches, in order), fixes of bugs the
# tests reach in code rmdev does not own, each written to be sent upstream.
cat_patches() {
	local p
	for p in "$RMDEV_TOP"/kernel/patches/*.patch; do
		[ -f "$p" ] && cat "$p"
	done
	return 0
}
apply_patches() {
	local p
	for p in "$RMDEV_TOP"/kernel/patches/*.patch; do
		[ -f "$p" ] || continue
		log "applying $(basename "$p")"
		patch -s -p1 -d "$1" <"$p" || die "$(basename "$p") does not apply to $(basename "$1")"
	done
}

build_kernel() {
	local kdir=$1 flavour=$2
	shift 2
	cd "$kdir"
	log "configuring $(basename "$kdir") ($flavour)"
	# virtme's own defconfig merge reassigns many symbols on purpose; keep
	# its other messages.
	local rc=0
	virtme-configkernel --defconfig 2>&1 >/dev/null | { grep -v 'override: reassigning' >&2 || true; } || rc=$?
	[ "$rc" = 0 ] || die "virtme-configkernel failed ($rc)"
	scripts/kconfig/merge_config.sh -m .config "$@" >/dev/null
	kmake olddefconfig
	kmake rustavailable >/dev/null || die "the kernel says Rust is not available with this toolchain"
	# Every option of the fragments must have survived olddefconfig: a
	# silently dropped CONFIG_RUST is the classic failure of this route.
	local line opt val got
	while read -r line; do
		case "$line" in CONFIG_*=*) ;; "# CONFIG_"*" is not set") ;; *) continue ;; esac
		if [[ "$line" == "# CONFIG_"* ]]; then
			opt=${line#\# }
			opt=${opt%% *}
			grep -q "^$opt=" .config && die "$opt should be off but olddefconfig turned it on"
		else
			opt=${line%%=*}
			val=${line#*=}
			got=$(grep "^$opt=" .config | cut -d= -f2- || true)
			[ "$got" = "$val" ] || die "$opt=$val requested, config has '${got:-unset}'"
		fi
	done < <(cat "$@")
	log "building the $flavour kernel (about 20 minutes on 2 cores)"
	local t0=$SECONDS
	kmake -j"$(($(nproc) + 1))" all
	log "kernel built in $((SECONDS - t0)) s"
	touch .rmdev-built
	cd - >/dev/null
}

# The kernel's UAPI headers (`make headers`, into the tree's usr/include),
# from which tools/vfio-uapi generates the tools' uAPI definitions.
setup_uapi() {
	local kdir
	kdir=$(rmdev_kdir "${RMDEV_KFLAVOUR:-test}")
	[ -f "$kdir/usr/include/linux/vfio.h" ] && [ -f "$kdir/usr/include/linux/iommufd.h" ] && return
	log "installing the kernel's UAPI headers"
	kmake -C "$kdir" headers
}

# The second-level guest's kernel: tinyconfig plus a serial console, PCI
# (INTx through the MP table, MSI) and 8250_pci, so that it reaches init in
# seconds even under emulation inside emulation. Built with GCC, apart from
# the main tree (an O= build needs a pristine source tree).
L2_OPTS=(-e 64BIT -e PRINTK -e TTY -e SERIAL_8250 -e SERIAL_8250_CONSOLE -e SERIAL_8250_PCI
	-e PCI -e PCI_MSI -e BLK_DEV_INITRD -e RD_GZIP -d RD_BZIP2 -d RD_LZMA -d RD_XZ -d RD_LZO
	-d RD_LZ4 -d RD_ZSTD -e BINFMT_ELF -e BINFMT_SCRIPT -e DEVTMPFS -e DEVTMPFS_MOUNT -e PROC_FS
	-e SYSFS -e SHMEM -e TMPFS -e EARLY_PRINTK -e X86_MPPARSE -e FUTEX -d KERNEL_XZ -e KERNEL_GZIP
	-e PCIEPORTBUS -e HOTPLUG_PCI -e HOTPLUG_PCI_PCIE -e BLOCK -e BLK_DEV_NVME
	--set-val SERIAL_8250_NR_UARTS 8 --set-val SERIAL_8250_RUNTIME_UARTS 8)
L2_RECIPE=1

setup_l2() {
	local key kver out
	kver=$(basename "$(rmdev_kdir "${RMDEV_KFLAVOUR:-test}")" | cut -d- -f2)
	key=$( (printf '%s\n' "${L2_OPTS[@]}" "recipe $L2_RECIPE" "$kver" && gcc --version | head -n1) | sha256sum | cut -c1-12)
	out=$RMDEV_CACHE/l2/kernel-$kver-$key
	if [ ! -f "$out/.rmdev-built" ]; then
		local src=$RMDEV_CACHE/l2/src-$kver deb
		if [ ! -f "$src/Makefile" ]; then
			deb=$(printf '%s\n' "$RMDEV_CACHE/dl/linux-source-${RMDEV_KSERIES}_$kver"-*.deb | head -n1)
			[ -f "$deb" ] || die "the .deb of linux-source $kver is not in the cache"
			rm -rf "$src" "$src.x" && mkdir -p "$src.x"
			dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$src.x" --wildcards '*/linux-source-*.tar.xz'
			tar -xf "$src.x"/usr/src/linux-source-*.tar.xz -C "$src.x"
			mv "$src.x/linux-source-$RMDEV_KSERIES" "$src" && rm -rf "$src.x"
		fi
		log "building the second-level guest kernel (about 2 minutes)"
		rm -rf "$out" && mkdir -p "$out"
		make -s -C "$src" O="$out" tinyconfig >/dev/null
		"$src/scripts/config" --file "$out/.config" "${L2_OPTS[@]}"
		make -s -C "$src" O="$out" olddefconfig >/dev/null
		make -s -C "$src" O="$out" -j"$(($(nproc) + 1))" bzImage
		touch "$out/.rmdev-built"
	fi
	ln -sfn "$out/arch/x86/boot/bzImage" "$RMDEV_CACHE/l2/bzImage"
}

what=${1:-all}
case "$what" in
host) setup_host ;;
tools) setup_tools ;;
kernel) setup_kernel "${RMDEV_KFLAVOUR:-test}" ;;
debug-kernel) setup_kernel debug ;;
bench-kernel) setup_kernel bench ;;
uapi) setup_uapi ;;
l2) setup_l2 ;;
lint) setup_lint ;;
all)
	setup_host
	setup_tools
	setup_kernel "${RMDEV_KFLAVOUR:-test}"
	setup_uapi
	setup_l2
	;;
*) die "unknown step $what" ;;
esac
