#!/usr/bin/env bash
# Control a mixgraph server from the shell with liblo's tools (Debian: liblo-tools).
#
#   bash mixgraph.sh [HOST] [PORT] [NODE_NAME] [REPLY_PORT]
#
# The server replies to the address and port a command came from. A plain
# `oscsend HOST PORT ...` sends from a new port every time and exits, so here
# every message goes out through ONE UDP socket that bash keeps open on fd 3
# (bash's /dev/udp); `oscsend -` only encodes the message (to stdout). The first
# message, `/reply-port REPLY_PORT`, asks the server to send this socket's
# replies to oscdump, which prints them one a line, e.g.
#     /done ss "/graph/add" "sh_g"
# The script adds a gain node, sets its gain to -6 dB, queries it, waits for
# the engine (/sync), removes the node, then prints what oscdump received.
set -euo pipefail
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
NAME=${3:-sh_g}
REPLY_PORT=${4:-9801}

OUT=$(mktemp)
oscdump -L "$REPLY_PORT" >"$OUT" &
DUMP=$!
trap 'kill $DUMP 2>/dev/null || true; rm -f "$OUT"' EXIT INT TERM
sleep 0.2                                    # let oscdump bind its port

exec 3<>"/dev/udp/$HOST/$PORT"               # one socket, one source port for everything
send() { oscsend - "$@" >&3; }               # one datagram per message

send /reply-port i "$REPLY_PORT"
send /graph/add ss gain "$NAME"
send "/node/$NAME/gain" f -6
send "/node/$NAME/gain"                      # a query: no arguments
send /sync i 1                               # answered by /synced 1 once applied
sleep 0.3
send /graph/remove s "$NAME"
sleep 0.3
exec 3>&-
cat "$OUT"
