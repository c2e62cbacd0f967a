#!/usr/bin/env bash
# Install the Debian packages a target needs, and only those missing. Idempotent; apt-get runs only when
# something is missing. Usage: scripts/deps.sh build|check|demo|bench|fuzz
set -euo pipefail

# libxdp-dev/libbpf-dev for af_xdp ports; libxdp1 carries the default XDP program (xsk_def_xdp_prog.o) they load.
build_pkgs=(gcc make meson ninja-build pkg-config python3 libc6-dev libxdp-dev libbpf-dev libxdp1)
# The interop suite's peers: QEMU and the pieces of its guest (tests/interop/guest/prepare.sh), DPDK's testpmd.
# gcc-12 make binutils: the guest kernel's vdpa_sim modules, built out of tree (tests/interop/guest/build-vdpasim.sh).
interop_pkgs=(qemu-system-x86 busybox-static cpio kmod xz-utils iproute2 ethtool dpdk dpdk-dev gcc-12 make binutils)
# The libFuzzer harnesses (tests/fuzz/): clang and its runtimes (libFuzzer, ASan, UBSan).
fuzz_pkgs=("${build_pkgs[@]}" clang libclang-rt-14-dev)
# tests/integration/test_install.py renders the man pages and verifies the systemd unit.
ops_pkgs=(man-db groff-base systemd)
# tests/integration/test_metrics.py scrapes with curl and validates with promtool.
metrics_pkgs=(curl prometheus)
# tests/integration/test_capture.py reads the capture files with tshark.
capture_pkgs=(tshark)
# tests/interop/test_libvirt.py runs libvirtd (and virtlogd) with its QEMU driver, and virsh.
libvirt_pkgs=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients)
check_pkgs=("${build_pkgs[@]}" ethtool libasan8 libubsan1 libtsan2 valgrind "${interop_pkgs[@]}" clang libclang-rt-14-dev "${ops_pkgs[@]}" "${metrics_pkgs[@]}" "${capture_pkgs[@]}" "${libvirt_pkgs[@]}")
case "${1:-build}" in
build) want=("${build_pkgs[@]}") ;;
check) want=("${check_pkgs[@]}") ;;
demo) want=("${build_pkgs[@]}" qemu-system-x86 busybox-static cpio kmod xz-utils iproute2) ;;
# bench/compare.py's peers (testpmd, OVS-DPDK), its chart, taskset, and bench/profile.sh's perf and callgrind.
bench) want=("${build_pkgs[@]}" dpdk dpdk-dev openvswitch-switch-dpdk python3-matplotlib linux-perf valgrind util-linux) ;;
fuzz) want=("${fuzz_pkgs[@]}") ;;
*) echo "usage: $0 build|check|demo|bench|fuzz" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}; run as root or install them" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# openvswitch-switch comes with a service (the kernel-datapath ovs-vswitchd and its ovsdb-server); the benchmark
# runs its own instance, so the system's must not run beside it.
if [ "${1:-build}" = bench ] && command -v systemctl >/dev/null && systemctl is-active --quiet openvswitch-switch; then
	echo "deps: stopping and disabling the openvswitch-switch service (bench/compare.py runs its own OVS)"
	systemctl stop openvswitch-switch ovs-vswitchd ovsdb-server 2>/dev/null || true
	systemctl disable openvswitch-switch 2>/dev/null || true
fi
