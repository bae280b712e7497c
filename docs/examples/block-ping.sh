#!/usr/bin/env bash
# Block pings to/from listed addresses, change the list on the fly, and get one
# line per ping, passed or dropped (block_ping).
#
#   sudo docs/examples/block-ping.sh IFACE [ADDRESS...]   # Ctrl-C detaches
# and from another shell, while it runs:
#   sudo pingkiller block IFACE 198.18.0.2      # its pings die from now on
#   sudo pingkiller unblock IFACE 198.18.0.2    # and pass again
set -euo pipefail
ifname=${1:?usage: $0 IFACE [ADDRESS...]}
shift

blocks=()
for address in "$@"; do blocks+=(--block "$address"); done
pingkiller attach "$ifname" --default pass --events pings "${blocks[@]}"
trap 'pingkiller detach "$ifname"' EXIT
pingkiller events "$ifname"
