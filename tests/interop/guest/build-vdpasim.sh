#!/usr/bin/env bash
# Build the kernel's vDPA network simulator (vdpa_sim.ko, vdpa_sim_net.ko, and vringh.ko when the kernel lacks
# CONFIG_VHOST_RING) out of tree for the guest kernel, which Debian builds without CONFIG_VDPA_SIM.
#   usage: build-vdpasim.sh KERNEL_DEB CACHEDIR OUTDIR
#   KERNEL_DEB: the linux-image .deb the guest boots; the .ko files land in OUTDIR.
# The headers and kbuild packages of exactly the image's version and the few source files needed from
# linux-source-6.12 are downloaded with apt-get download and unpacked with dpkg -x / tar, never installed
# (linux-headers depends on linux-image: installing it would install that kernel on the host). Everything is
# cached in CACHEDIR keyed by the kernel package and this script, so a rebuild happens only when either changes.
# Needs (scripts/deps.sh interop): gcc-12 (the compiler the headers package names), make, binutils, kmod, xz-utils.
set -euo pipefail
DEB=$(realpath "$1")
C=$(mkdir -p "$2" && cd "$2" && pwd)
OUT=$(mkdir -p "$3" && cd "$3" && pwd)
say() { echo "build-vdpasim: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

VER=$(dpkg-deb -f "$DEB" Version)
PKG=$(dpkg-deb -f "$DEB" Package)
KVER=${PKG#linux-image-}
MM=$(echo "$KVER" | cut -d. -f1-2)
key=$( (echo "$PKG=$VER"; cat "$0") | sha256sum | cut -c1-16)
K="$C/ko-$key"
if [ -f "$K/done" ]; then
	cp "$K"/*.ko "$OUT/"
	exit 0
fi
t0=$SECONDS
rm -rf "$C"/ko-* "$C/tmp"
T="$C/tmp"
mkdir -p "$T/dl" "$T/root" "$T/src" "$T/m"

# The image's config says which pieces the kernel already has (vringh is built in when something needs it).
dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$T/root" "./boot/config-$KVER"
cfg() { sed -n "s/^CONFIG_$1=//p" "$T/root/boot/config-$KVER"; }
[ -n "$(cfg VDPA)" ] && [ -n "$(cfg VHOST_IOTLB)" ] || die "$KVER has no CONFIG_VDPA or CONFIG_VHOST_IOTLB"
MODS="vdpa_sim vdpa_sim_net"
[ -n "$(cfg VHOST_RING)" ] || MODS="vringh $MODS"

HPKG=linux-headers-$KVER
HDEPS=$(apt-cache show "$HPKG=$VER" 2>/dev/null | sed -n 's/^Depends: //p' | head -1)
[ -n "$HDEPS" ] || die "$HPKG=$VER is not in the apt sources (apt-cache madison $HPKG)"
CPKG=$(echo "$HDEPS" | grep -o -E 'linux-headers-[^ ,]+-common' | head -1)
KBPKG=$(echo "$HDEPS" | grep -o -E 'linux-kbuild-[^ ,]+' | head -1)
GCC=$(echo "$HDEPS" | grep -o -E '\bgcc-[0-9]+' | head -1)
command -v "$GCC" >/dev/null || die "$GCC (the kernel's compiler) is missing: scripts/deps.sh interop"
say "$PKG $VER: building $MODS with $GCC against $HPKG $CPKG $KBPKG"
(cd "$T/dl" && apt-get -q -o APT::Sandbox::User=root download "$HPKG=$VER" "$CPKG=$VER" "$KBPKG=$VER" \
	"linux-source-$MM=$VER" >/dev/null)
for p in "$HPKG" "$CPKG" "$KBPKG"; do dpkg -x "$T"/dl/"$p"_*.deb "$T/root"; done
# Only the simulator's and vringh's sources: the rest of the 150 MB tarball is streamed past, never written.
dpkg-deb --fsys-tarfile "$T"/dl/linux-source-"$MM"_*.deb | tar -x -O -f - "./usr/src/linux-source-$MM.tar.xz" |
	xz -dc | tar -x -C "$T/src" --wildcards "linux-source-$MM/drivers/vdpa/vdpa_sim/*" \
	"linux-source-$MM/drivers/vhost/vringh.c"
HDIR="$T/root/usr/src/$HPKG"
# The headers' Makefile is "include /usr/src/<common>/Makefile": point it at the unpacked copy.
sed -i "s|^include /usr/src/|include $T/root/usr/src/|" "$HDIR/Makefile"
S="$T/src/linux-source-$MM"
cp "$S/drivers/vdpa/vdpa_sim/vdpa_sim.h" "$T/m/"
for m in $MODS; do
	case $m in vringh) cp "$S/drivers/vhost/vringh.c" "$T/m/" ;; *) cp "$S/drivers/vdpa/vdpa_sim/$m.c" "$T/m/" ;; esac
done
echo "obj-m += $(for m in $MODS; do printf '%s.o ' "$m"; done)" >"$T/m/Kbuild"
# No BTF: it would need pahole and the image's vmlinux, and the modules are stripped of debug info anyway.
make -s -C "$HDIR" M="$T/m" CC="$GCC" CONFIG_DEBUG_INFO_BTF_MODULES= -j"$(nproc)" modules >"$T/build.log" 2>&1 ||
	{ cat "$T/build.log" >&2; die "make failed"; }
# A module whose imports do not match the image's symbol CRCs would be refused by the guest's modprobe: check
# here, where the message can say why.
for m in $MODS; do
	vm=$(modinfo -F vermagic "$T/m/$m.ko")
	case "$vm" in "$KVER "*) ;; *) die "$m.ko vermagic '$vm' is not $KVER" ;; esac
	modprobe --dump-modversions "$T/m/$m.ko"
done | awk 'FNR == NR { crc[$2] = $1; next } !($2 in crc) || crc[$2] != $1 { print "  " $2 ": " $1; bad++ }
	END { exit bad > 0 }' <(cat "$HDIR/Module.symvers" "$T/m/Module.symvers") - >&2 ||
	die "imports above do not match $HPKG's Module.symvers"
mkdir -p "$K"
for m in $MODS; do strip --strip-debug -o "$K/$m.ko" "$T/m/$m.ko"; done
rm -rf "$T"
touch "$K/done"
cp "$K"/*.ko "$OUT/"
say "built $MODS in $((SECONDS - t0)) s"
