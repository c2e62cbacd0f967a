#!/usr/bin/env bash
# `make demo`: what vhostd can do today, with real traffic and every frame checked.
#  1. vhd-ringdemo: frames looped from a guest TX virtqueue to its RX virtqueue through a device thread.
#  2. vhost-pktgen as a vhost-user back-end (echoing with MACs swapped) and vhost-pktgen as a frontend
#     ("virtio-user", no VM) in another process: 2 queue pairs, 1M frames of 60..1514 bytes, each checked when
#     it comes back.
# Usage: scripts/demo.sh BUILD_DIR
set -euo pipefail
b=${1:?usage: $0 BUILD_DIR}
sock=$(mktemp -u /tmp/vhostd-demo-XXXXXX.sock)
cleanup() { [ -n "${be:-}" ] && kill "$be" 2>/dev/null; rm -f "$sock"; }
trap cleanup EXIT

echo "== 1. virtqueue loopback (vhd-ringdemo) =="
"$b/tools/vhd-ringdemo"
echo
echo "== 2. vhost-user: vhost-pktgen back-end (macswap) <-> vhost-pktgen frontend (txonly --verify) =="
echo "\$ vhost-pktgen --backend $sock --mode macswap --queues 2 &"
"$b/tools/vhost-pktgen" --backend "$sock" --mode macswap --queues 2 &
be=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
echo "\$ vhost-pktgen --frontend $sock --mode txonly --verify --queues 2 --size 60-1514 --count 1000000"
"$b/tools/vhost-pktgen" --frontend "$sock" --mode txonly --verify --queues 2 --size 60-1514 --count 1000000 || true
echo
echo "back-end's view:"
kill -INT "$be"
wait "$be" || true
be=
