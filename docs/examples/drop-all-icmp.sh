#!/usr/bin/env bash
# Drop every ICMP packet arriving on an interface and watch the counters and the
# average processing time per verdict live (the Go PingKiller's job).
# IPv6 neighbour discovery still passes, so the interface keeps working.
#
#   sudo docs/examples/drop-all-icmp.sh IFACE        # Ctrl-C detaches
set -euo pipefail
ifname=${1:?usage: $0 IFACE}

pingkiller attach "$ifname" --icmp all --timing
trap 'pingkiller detach "$ifname"' EXIT
pingkiller stats "$ifname" --watch
