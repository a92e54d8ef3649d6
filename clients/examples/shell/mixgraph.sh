#!/bin/sh
# Control a mixgraph server from the shell with liblo's tools (Debian: liblo-tools).
#
#   sh mixgraph.sh [HOST] [PORT] [NODE_NAME] [REPLY_PORT]
#
# oscsend sends one message and exits, from a new port each time, so the
# replies cannot come back to it: oscdump listens on REPLY_PORT and the
# server is asked to send this host's replies there (/reply-port). The
# script adds a gain node, sets its gain to -6 dB, queries it and removes it;
# oscdump prints what came back, one message a line (`/done /graph/add sh_g`
# is printed by oscdump as `/done ss "/graph/add" "sh_g"`).
set -eu
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
NAME=${3:-sh_g}
REPLY_PORT=${4:-9801}

OUT=$(mktemp)
oscdump -L "$REPLY_PORT" >"$OUT" &
DUMP=$!
trap 'kill $DUMP 2>/dev/null || true; rm -f "$OUT"' EXIT INT TERM
sleep 0.2                                             # let oscdump bind its port

oscsend "$HOST" "$PORT" /reply-port i "$REPLY_PORT"
oscsend "$HOST" "$PORT" /graph/add ss gain "$NAME"
oscsend "$HOST" "$PORT" "/node/$NAME/gain" f -6
oscsend "$HOST" "$PORT" "/node/$NAME/gain"            # a query: no arguments
oscsend "$HOST" "$PORT" /sync i 1                     # answered by /synced 1 when applied
sleep 0.3
oscsend "$HOST" "$PORT" /graph/remove s "$NAME"
sleep 0.3
cat "$OUT"
