#!/bin/sh
# meson install helper: install the sample configuration $2 as $1 (under $DESTDIR) only if there is none yet,
# so that reinstalling or upgrading never overwrites an operator's ports.
set -eu
dest="${DESTDIR:-}$1"
if [ -e "$dest" ]; then
	echo "keeping the existing $dest"
	exit 0
fi
mkdir -p "$(dirname "$dest")"
cp "$2" "$dest"
chmod 0644 "$dest"
echo "installed $dest"
