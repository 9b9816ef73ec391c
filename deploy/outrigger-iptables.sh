#!/bin/sh
# outrigger-iptables.sh: transparent mode. Redirects a pod's (or host's) TCP
# traffic through the Outrigger sidecar with iptables' nat table, so that the
# app needs no change:
#   - inbound: TCP arriving for the app's ports goes to the sidecar's inbound
#     listener (default 15006), which forwards it to the app on loopback;
#   - outbound: TCP the app opens to other hosts goes to the sidecar's
#     outbound listener (default 15001), which routes it by Host/:authority.
# The sidecar's own connections (its user id) and loopback traffic are left
# alone, so forwarding does not loop back into the sidecar.
#
# Run it once, as root (in Kubernetes: an init container with NET_ADMIN and
# NET_RAW), before the app starts. It is idempotent: it removes its own
# chains before adding them again. --clean removes them only.
#
# usage: outrigger-iptables.sh [--clean] [--dry-run]
# Settings (environment):
#   OUTRIGGER_UID            uid the sidecar runs as (required; e.g. 1337)
#   OUTRIGGER_INBOUND_PORT   the inbound listener's port (default 15006)
#   OUTRIGGER_OUTBOUND_PORT  the outbound listener's port (default 15001)
#   OUTRIGGER_APP_PORTS      app ports whose inbound traffic to capture,
#                            comma-separated, or "*" for all (default "*")
#   OUTRIGGER_EXCLUDE_INBOUND_PORTS   more ports never captured inbound,
#                            comma-separated, e.g. an SSH port; the sidecar's
#                            own (15000, 15001, 15002 and the two above) are
#                            never captured either way
#   OUTRIGGER_EXCLUDE_OUTBOUND_CIDRS  destinations never captured outbound,
#                            comma-separated (default: none besides loopback)
#   IPTABLES                 the iptables command (default iptables)
set -eu

CLEAN=0 DRY=0
for a in "$@"; do
  case $a in
    --clean) CLEAN=1 ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "outrigger-iptables: unknown argument $a" >&2; exit 2 ;;
  esac
done

# Refuse before anything changes: a run without the uid must not remove
# the rules in place and leave the pod without its redirect.
if [ "$CLEAN" = 0 ] && [ -z "${OUTRIGGER_UID:-}" ]; then
  echo "outrigger-iptables: set OUTRIGGER_UID to the uid the sidecar runs as" >&2
  exit 2
fi

IPT=${IPTABLES:-iptables}
IN_PORT=${OUTRIGGER_INBOUND_PORT:-15006}
OUT_PORT=${OUTRIGGER_OUTBOUND_PORT:-15001}
APP_PORTS=${OUTRIGGER_APP_PORTS:-*}
# The sidecar's own ports always pass: the admin port above all, where the
# kubelet's probes would otherwise reach the app instead of /ready.
EXCL_IN="15000,15001,15002,$OUT_PORT,$IN_PORT,${OUTRIGGER_EXCLUDE_INBOUND_PORTS:-}"
EXCL_OUT=${OUTRIGGER_EXCLUDE_OUTBOUND_CIDRS:-}

ipt() {
  if [ "$DRY" = 1 ]; then echo "$IPT -t nat $*"; else $IPT -t nat "$@"; fi
}
# quiet: for removal steps that fail when there is nothing to remove.
quiet() {
  if [ "$DRY" = 1 ]; then echo "$IPT -t nat $*"; else $IPT -t nat "$@" 2>/dev/null || true; fi
}

# Remove our jumps and chains (idempotent).
quiet -D PREROUTING -p tcp -j OUTRIGGER_INBOUND
quiet -D OUTPUT -p tcp -j OUTRIGGER_OUTPUT
for c in OUTRIGGER_INBOUND OUTRIGGER_IN_REDIRECT OUTRIGGER_OUTPUT OUTRIGGER_REDIRECT; do
  quiet -F $c
  quiet -X $c
done
[ "$CLEAN" = 1 ] && exit 0

for c in OUTRIGGER_INBOUND OUTRIGGER_IN_REDIRECT OUTRIGGER_OUTPUT OUTRIGGER_REDIRECT; do
  ipt -N $c
done
ipt -A OUTRIGGER_IN_REDIRECT -p tcp -j REDIRECT --to-ports "$IN_PORT"
ipt -A OUTRIGGER_REDIRECT -p tcp -j REDIRECT --to-ports "$OUT_PORT"

# Inbound: PREROUTING sees connections arriving from outside the pod.
ipt -A PREROUTING -p tcp -j OUTRIGGER_INBOUND
seen=" "
for p in $(echo "$EXCL_IN" | tr ',' ' '); do
  case $seen in *" $p "*) continue ;; esac
  seen="$seen$p "
  ipt -A OUTRIGGER_INBOUND -p tcp --dport "$p" -j RETURN
done
if [ "$APP_PORTS" = "*" ]; then
  ipt -A OUTRIGGER_INBOUND -p tcp -j OUTRIGGER_IN_REDIRECT
else
  for p in $(echo "$APP_PORTS" | tr ',' ' '); do
    ipt -A OUTRIGGER_INBOUND -p tcp --dport "$p" -j OUTRIGGER_IN_REDIRECT
  done
fi

# Outbound: OUTPUT sees connections opened by processes in the pod.
ipt -A OUTPUT -p tcp -j OUTRIGGER_OUTPUT
# The sidecar's own connections (to upstreams and to the app) pass.
ipt -A OUTRIGGER_OUTPUT -m owner --uid-owner "$OUTRIGGER_UID" -j RETURN
# Loopback: the app talking to its sidecar explicitly, or to itself.
ipt -A OUTRIGGER_OUTPUT -o lo -j RETURN
ipt -A OUTRIGGER_OUTPUT -d 127.0.0.1/32 -j RETURN
for c in $(echo "$EXCL_OUT" | tr ',' ' '); do
  ipt -A OUTRIGGER_OUTPUT -d "$c" -j RETURN
done
ipt -A OUTRIGGER_OUTPUT -j OUTRIGGER_REDIRECT
