# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0
#
# Common settings for rmdev's scripts. Sourced, never run.
#
# The settings are used by the scripts that source this file, which
# ShellCheck, checking this file alone, cannot see.
# shellcheck disable=SC2034
#
# Everything fetched or built lives under $RMDEV_CACHE, outside the work
# tree, so that a second run on the same machine rebuilds nothing.

RMDEV_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RMDEV_CACHE=${RMDEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rmdev}

# The kernel series rmdev is built against. The newest 7.2.x Debian serves is
# taken; a patch release is never pinned, because the archive drops old ones.
RMDEV_KSERIES=7.2
# The bindgen release the kernel's minimum (0.71.1) is satisfied by.
RMDEV_BINDGEN_VERSION=0.72.1
RMDEV_VIRTME_VERSION=1.42
# The QMP client package (PyPI) the VM tests drive QEMU with.
RMDEV_QMP_VERSION=0.0.6
# LLVM suffix: bookworm/main ships clang-19, which kernel 7.2 accepts.
RMDEV_LLVM=-19

export PATH="$RMDEV_CACHE/tools/bin:$RMDEV_CACHE/venv/bin:$HOME/.cargo/bin:$PATH"
export LIBCLANG_PATH=/usr/lib/llvm${RMDEV_LLVM}/lib

log() { printf '[rmdev %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	printf '[rmdev] error: %s\n' "$*" >&2
	exit 1
}

# The private apt configuration used only for `apt-get download` of
# architecture-independent packages from suites newer than the host's.
# The host's own sources are never touched by this.
papt_args() {
	local d=$RMDEV_CACHE/apt
	printf '%s\n' -o "Dir::Etc::SourceList=$d/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null \
		-o "Dir::State=$d/state" -o "Dir::State::status=$d/status" \
		-o "Dir::Cache=$d/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root \
		-o APT::Get::AllowUnauthenticated=false
}

# The build directory of the cached kernel of a flavour (test, the default,
# debug or bench), if one is built. RMDEV_KFLAVOUR=debug makes the scripts
# that build and boot use the debug kernel (`make test-debug`, `make fuzz`).
kdir_file() {
	case "${1:-test}" in
	test) echo "$RMDEV_CACHE/kernel/current" ;;
	*) echo "$RMDEV_CACHE/kernel/current-$1" ;;
	esac
}
rmdev_kdir() {
	local f
	f=$(kdir_file "${1:-test}")
	[ -f "$f" ] || die "no ${1:-test} kernel built yet: run scripts/setup.sh (make setup, or make bench)"
	cat "$f"
}

# KVM detection: /dev/kvm may open on this machine kind yet boot no Linux
# guest, so the answer comes from a bounded probe boot, cached per machine.
rmdev_accel() {
	if [ -n "${RMDEV_ACCEL:-}" ]; then
		echo "$RMDEV_ACCEL"
		return
	fi
	local f=$RMDEV_CACHE/accel
	if [ -f "$f" ] && [ "$(cut -d' ' -f2 <"$f")" = "$(uname -r)" ]; then
		cut -d' ' -f1 <"$f"
		return
	fi
	local accel=tcg
	if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		local kdir
		kdir=$(rmdev_kdir test)
		if timeout 60 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults \
			-no-reboot -display none -serial stdio \
			-kernel "$kdir/arch/x86/boot/bzImage" \
			-append "console=ttyS0 panic=-1 rdinit=/bin/nonexistent" 2>/dev/null |
			grep -q -m1 'Kernel panic'; then
			accel=kvm
		fi
	fi
	echo "$accel $(uname -r)" >"$f"
	echo "$accel"
}

# The test VM's multi-port serial card (Documentation/testing.rst, "The
# serial card"): a QEMU pci-serial-4x whose four ports are Unix-socket
# chardevs to tests/qemu/serial-relay.py on this host, and a pci-testdev
# (1b36:0005) that no driver of the VM wants, the device rmdev must refuse.
# The relay listens and QEMU connects (QEMU is the client), so the relay must
# be running before the boot: QEMU refuses to start without its sockets, and
# no byte the guest sends can be lost.
RMDEV_CARD_PORTS=4

# card_start DIR: starts the relay with its sockets and records in DIR and
# waits until it listens; RMDEV_RELAY_PID is its process.
card_start() {
	local dir=$1
	rm -f "$dir/serial-relay.ready"
	python3 "$RMDEV_TOP/tests/qemu/serial-relay.py" "$dir" "$RMDEV_CARD_PORTS" \
		>"$dir/serial-relay.log" 2>&1 &
	RMDEV_RELAY_PID=$!
	for _ in $(seq 100); do
		[ -e "$dir/serial-relay.ready" ] && return 0
		kill -0 "$RMDEV_RELAY_PID" 2>/dev/null || break
		sleep 0.1
	done
	die "the serial relay did not start: $(cat "$dir/serial-relay.log")"
}

# card_stop: stops the relay card_start started.
card_stop() {
	[ -n "${RMDEV_RELAY_PID:-}" ] || return 0
	kill "$RMDEV_RELAY_PID" 2>/dev/null || true
	wait "$RMDEV_RELAY_PID" 2>/dev/null || true
	RMDEV_RELAY_PID=
}

# card_qemu_opts DIR: the QEMU options of the card whose relay listens in
# DIR, on one line (vng --qemu-opts splits it at spaces).
card_qemu_opts() {
	local n opts="" dev="-device pci-serial-4x"
	for n in $(seq 0 $((RMDEV_CARD_PORTS - 1))); do
		opts+="-chardev socket,id=pser$n,path=$1/pserial-$n.sock "
		dev+=",chardev$((n + 1))=pser$n"
	done
	echo "$opts$dev -device pci-testdev"
}
