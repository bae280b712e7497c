#!/usr/bin/env bash
# Drop all traffic (every protocol, not only pings) from or to one address and
# show the counters of each CPU (the 2019 xdp_ip_filter, which ran on lo).
#
#   sudo docs/examples/drop-source.sh IFACE ADDRESS   # Ctrl-C detaches
set -euo pipefail
ifname=${1:?usage: $0 IFACE ADDRESS}
address=${2:?usage: $0 IFACE ADDRESS}

pingkiller attach "$ifname" --block "$address" --all-protocols
trap 'pingkiller detach "$ifname"' EXIT
pingkiller stats "$ifname" --watch --per-cpu
