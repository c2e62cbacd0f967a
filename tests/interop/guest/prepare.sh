#!/usr/bin/env bash
# Build the guest for the interop tests into WORKDIR, once: a Debian 6.12 kernel (downloaded with apt-get and
# unpacked, never installed) and a BusyBox initramfs holding its virtio/vhost/vDPA modules, the vDPA network
# simulator built out of tree for it (build-vdpasim.sh, cached in WORKDIR/vdpasim), our /init, the guest test
# scripts and nettool. Rebuilt only when an input changes (the key covers the kernel package and
# every file in this folder).
#   usage: prepare.sh WORKDIR   -> WORKDIR/vmlinuz, WORKDIR/initrd.gz
# Needs (scripts/deps.sh interop): busybox-static cpio kmod xz-utils gcc libc6-dev (and build-vdpasim.sh's), and apt sources that carry
# bookworm-security (the 6.1 kernel of bookworm itself has no vDPA, which later tests need).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
W=$(mkdir -p "$1" && cd "$1" && pwd)

find_kernel() {
	apt-cache search --names-only '^linux-image-6\.12\.[0-9.]*\+deb12-amd64$' | awk '{print $1}' | sort -V | tail -1
}
KPKG=$(find_kernel)
if [ -z "$KPKG" ]; then
	apt-get update -qq
	KPKG=$(find_kernel)
fi
if [ -z "$KPKG" ]; then
	echo "prepare: no linux-image-6.12.*+deb12-amd64 in the apt sources (bookworm-security missing?)" >&2
	exit 1
fi
key=$( (echo "$KPKG"; cat "$here"/prepare.sh "$here"/build-vdpasim.sh "$here"/init "$here"/nettool.c "$here"/tests/*.sh) | sha256sum | cut -c1-16)
if [ -f "$W/key" ] && [ "$(cat "$W/key")" = "$key" ] && [ -f "$W/vmlinuz" ] && [ -f "$W/initrd.gz" ]; then
	exit 0
fi
echo "prepare: building the guest ($KPKG) in $W"
rm -f "$W/key"
mkdir -p "$W/debs"
if ! ls "$W/debs/${KPKG}"_*.deb >/dev/null 2>&1; then
	rm -f "$W"/debs/*.deb
	(cd "$W/debs" && apt-get -q -o APT::Sandbox::User=root download "$KPKG" >/dev/null)
fi
KD="$W/kernel"
rm -rf "$KD"
mkdir -p "$KD"
dpkg -x "$W"/debs/"${KPKG}"_*.deb "$KD"
KVER=$(ls "$KD/lib/modules")
cp "$KD"/boot/vmlinuz-"$KVER" "$W/vmlinuz"

R=$(mktemp -d "$W/initrd.XXXXXX")
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,tests,lib/modules/"$KVER"}
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
done
# The modules the tests load, with what they depend on, decompressed (BusyBox modprobe reads plain .ko).
MODS="virtio_pci virtio_net tun vhost vhost_iotlb vhost_net vdpa vduse vhost_vdpa virtio_vdpa"
depmod -b "$KD" "$KVER"
for m in $MODS; do
	modprobe -d "$KD" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}' || true
done | sort -u | while read -r f; do
	rel=${f#"$KD"/lib/modules/"$KVER"/}
	mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
	case "$f" in
	*.ko.xz) xz -dc "$f" >"$R/lib/modules/$KVER/${rel%.xz}" ;;
	*) cp "$f" "$R/lib/modules/$KVER/$rel" ;;
	esac
done
cp "$KD/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KVER/" 2>/dev/null || true
# Without the simulator only test_vdpa fails (naming the missing device): the other tests need not wait on
# linux-source. The guest is then not marked built, so the next run tries again.
vdpasim=ok
"$here/build-vdpasim.sh" "$W"/debs/"${KPKG}"_*.deb "$W/vdpasim" "$R/lib/modules/$KVER/extra" ||
	vdpasim="failed (see above): the guest has no vdpa_sim_net"
depmod -b "$R" "$KVER"
gcc -O2 -static -std=gnu11 -Wall -Wextra -Werror -o "$R/usr/bin/nettool" "$here/nettool.c"
install -m 755 "$here/init" "$R/init"
cp "$here"/tests/*.sh "$R/tests/"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -6) >"$W/initrd.gz.tmp"
mv "$W/initrd.gz.tmp" "$W/initrd.gz"
rm -rf "$KD"
[ "$vdpasim" = ok ] && echo "$key" >"$W/key"
echo "prepare: $W/initrd.gz $(du -h "$W/initrd.gz" | cut -f1), $(find "$R" -name '*.ko' | wc -l) modules; vdpa_sim $vdpasim"
