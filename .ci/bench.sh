#!/usr/bin/env bash
# make bench: Outrigger under load, beside nginx, HAProxy and httputil.
#
# With the peer benchmark present (BENCH_SHARED, default ../shared/bench next
# to the repository), this runs its proxy-bench.sh
# with Outrigger as the extra target: HTTP/1.1 (wrk), h2c and gRPC unary
# (h2load), and fixed-rate runs; it prints req/s, p50/p99, the ratio to
# direct and the proxy's CPU microseconds per request for every target.
# Without it (or with --self), a self-contained comparison runs instead:
# the same kinds of load against a direct upstream and against Outrigger in
# front of it, using cmd/outrigger-bench for the upstream and the open loop.
#
# usage: .ci/bench.sh [--bin PATH] [--self] [--duration S] [--rounds N]
#                     [--rate R] [-- ARGS for proxy-bench.sh]
#   --bin PATH      the outrigger binary (default bin/outrigger; built if missing)
#   --self          skip the peer benchmark even when it is present
#   --duration S    measured seconds per target (default 10)
#   --rounds N      rounds (peer benchmark; medians) (default 1)
#   --rate R        offered req/s of the fixed-rate run (default 1000)
#   --out DIR       where raw outputs go (default /tmp/outrigger-bench.<time>)
# Needs Debian's wrk and nghttp2-client (and nginx-light, haproxy for the peer
# benchmark); they are installed with apt-get when missing and this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
repo=$(pwd)

BIN=bin/outrigger SELF=0 DUR=10 ROUNDS=1 RATE=1000 OUT="" PASS=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --self) SELF=1; shift ;;
    --duration) DUR=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --) shift; PASS=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
SHARED=${BENCH_SHARED:-$repo/../shared/bench}
PEER=0
[ "$SELF" = 0 ] && [ -x "$SHARED/proxy-bench.sh" ] && PEER=1
OUT=${OUT:-/tmp/outrigger-bench.$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

need=(wrk h2load)
pkgs=(wrk nghttp2-client)
if [ $PEER = 1 ]; then need+=(nginx haproxy nghttp curl); pkgs+=(nginx-light haproxy curl); fi
missing=0
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing=1; done
if [ $missing = 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench: installing ${pkgs[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  else
    echo "bench: needs ${need[*]}: apt-get install ${pkgs[*]}" >&2; exit 1
  fi
fi
[ -x "$BIN" ] || go build -trimpath -o "$BIN" ./cmd/outrigger
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# The bench config: @PORT@ serves HTTP/1.1 and h2c; gRPC (/bench.Echo/) goes
# to the upstream over h2c, everything else over HTTP/1.1 with a warm pool,
# as the nginx and HAProxy peers are set up. No access log, warn-level logs.
cat >"$OUT/outrigger.yaml.in" <<'YAML'
admin:
  address: 127.0.0.1:0
listeners:
  outbound:
    address: 127.0.0.1:@PORT@
  app_api:
    disabled: true
clusters:
  up:
    endpoints: ["@UPSTREAM@"]
    protocol: http1
    pool:
      max_idle_per_endpoint: 1024
  grpc:
    endpoints: ["@UPSTREAM@"]
    protocol: grpc
routes:
  - name: grpc
    match:
      path:
        prefix: /bench.Echo/
    cluster: grpc
  - name: default
    cluster: up
logging:
  level: warn
YAML

if [ $PEER = 1 ]; then
  echo "bench: peer benchmark $SHARED/proxy-bench.sh" >&2
  # proxy-bench substitutes {PORT} and {UPSTREAM} in the command line.
  cmd="sed -e 's/@PORT@/{PORT}/; s/@UPSTREAM@/{UPSTREAM}/' '$OUT/outrigger.yaml.in' >'$OUT/outrigger.yaml' && exec '$BIN' run -c '$OUT/outrigger.yaml'"
  exec "$SHARED/proxy-bench.sh" --rounds "$ROUNDS" --duration "$DUR" --rate "$RATE" --out "$OUT/peer" \
    --extra-name outrigger --extra-port 18085 --extra-cmd "$cmd" "${PASS[@]}"
fi

# ---- self-contained comparison: direct upstream vs Outrigger ----
echo "bench: peer benchmark not found at $SHARED; comparing Outrigger with direct only" >&2
go build -o "$OUT/outrigger-bench" ./cmd/outrigger-bench
UP=127.0.0.1:18180 PORT=18185
ncpu=$(nproc)
srv_cpu=0 cli_cpu=$(( ncpu > 1 ? 1 : 0 ))
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 100); do port_open "$1" && return 0; sleep 0.1; done
  echo "bench: nothing listens on $1" >&2; exit 1
}
for p in 18180 18185; do port_open $p && { echo "bench: port $p is in use" >&2; exit 1; }; done
taskset -c $srv_cpu "$OUT/outrigger-bench" upstream -addr $UP 2>"$OUT/upstream.log" &
PIDS+=($!)
sed -e "s/@PORT@/$PORT/; s/@UPSTREAM@/$UP/" "$OUT/outrigger.yaml.in" >"$OUT/outrigger.yaml"
taskset -c $srv_cpu "$BIN" run -c "$OUT/outrigger.yaml" 2>"$OUT/outrigger.log" &
OPID=$!
PIDS+=($OPID)
wait_port 18180; wait_port $PORT
printf '\x00\x00\x00\x00\x80\x0a\x7e%s' "$(printf 'z%.0s' $(seq 126))" >"$OUT/grpc-req.bin"

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# measure PHASE TARGET PORT -> one row in $OUT/results.tsv
printf 'phase\ttarget\treq/s\tp50ms\tp99ms\terrors\tprx_us\n' >"$OUT/results.tsv"
# loadcmd PHASE URL SECONDS [LOGFILE]: sets LC to the load generator's argv.
loadcmd() {
  local u=$2 secs=$3 lf=()
  [ -n "${4:-}" ] && lf=(--log-file="$4")
  case $1 in
    h1) LC=(wrk -t1 -c32 -d"${secs}s" --latency "$u/hello") ;;
    h2c) LC=(h2load -t1 -c32 -m10 -D "$secs" "${lf[@]}" "$u/hello") ;;
    grpc) LC=(h2load -t1 -c32 -m10 -D "$secs" "${lf[@]}" -d "$OUT/grpc-req.bin"
              -H 'content-type: application/grpc' -H 'te: trailers' "$u/bench.Echo/Echo") ;;
    rate-h1) LC=("$OUT/outrigger-bench" openloop -rate "$RATE" -d "${secs}s" -conns 32 -url "$u/hello") ;;
  esac
}
measure() {
  local ph=$1 t=$2 u="http://127.0.0.1:$3" raw="$OUT/$1-$2.txt" c0 c1 rps p50 p99 errs reqs us
  loadcmd "$ph" "$u" 2
  timeout 60 taskset -c $cli_cpu "${LC[@]}" >/dev/null 2>&1 || true
  loadcmd "$ph" "$u" "$DUR" "$raw.log"
  c0=$(cpu_ticks $OPID)
  timeout $((DUR + 60)) taskset -c $cli_cpu "${LC[@]}" >"$raw" 2>&1 || true
  c1=$(cpu_ticks $OPID)
  case $ph in
    h1) read -r rps reqs errs p50 p99 < <(awk '
          function ms(x){ if (x ~ /us$/) return x/1000; if (x ~ /ms$/) return x+0; if (x ~ /s$/) return x*1000; return x }
          /Requests\/sec/ {r=$2} / requests in / {n=$1} /Socket errors/ {gsub(/,/,""); e+=$4+$6+$8+$10} /Non-2xx/ {e+=$NF}
          $1=="50%"{a=ms($2)} $1=="99%"{b=ms($2)} END{printf "%s %s %d %.3f %.3f\n", r, n, e, a, b}' "$raw") ;;
    rate-h1) read -r rps reqs errs p50 p99 < <(awk '
          /^requests:/ {n=$2; e=$4} /^achieved:/ {r=$2} /^latency_ms:/ {a=$3; b=$7}
          END{printf "%s %s %d %s %s\n", r, n, e, a, b}' "$raw") ;;
    *) read -r rps reqs errs < <(awk '
          /^finished in/ {for(i=1;i<=NF;i++) if ($i=="req/s,") r=$(i-1)}
          /^requests:/ {gsub(/,/,""); n=$8; e+=$10+$12+$14} /^status codes:/ {gsub(/,/,""); e+=$7+$9}
          END{printf "%s %s %d\n", r, n, e}' "$raw")
       read -r _ p50 _ p99 _ _ < <("$OUT/outrigger-bench" pct "$raw.log"); rm -f "$raw.log" ;;
  esac
  us=-
  if [ "$t" = outrigger ] && [ "${reqs:-0}" -gt 0 ]; then
    us=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN{printf "%.1f", d*1e6/hz/n}')
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ph" "$t" "${rps:--}" "${p50:--}" "${p99:--}" "${errs:-?}" "$us" >>"$OUT/results.tsv"
  echo "bench: $ph $t: ${rps:--} req/s p50 ${p50:--} ms p99 ${p99:--} ms errors ${errs:-?}" >&2
}
for ph in h1 h2c grpc rate-h1; do
  measure $ph direct 18180
  measure $ph outrigger $PORT
done
{
  echo "# outrigger vs direct, $(date -u +%FT%TZ): servers on CPU $srv_cpu, load on CPU $cli_cpu, ${DUR}s per run"
  echo "# h1: wrk -c32; h2c, grpc: h2load -c32 -m10; rate-h1: $RATE req/s open loop; prx_us = Outrigger CPU us per request"
  awk -F'\t' 'NR==1 {printf "%-8s %-10s %10s %8s %8s %7s %8s %7s\n", $1, $2, $3, $4, $5, "ratio", $7, $6; next}
    $2=="direct" {d[$1]=$3}
    {ratio = (d[$1] > 0 && $3 != "-") ? sprintf("%.2f", $3/d[$1]) : "-"
     printf "%-8s %-10s %10s %8s %8s %7s %8s %7s\n", $1, $2, $3, $4, $5, ratio, $7, $6}' "$OUT/results.tsv"
} | tee "$OUT/summary.txt"
echo "bench: raw outputs in $OUT" >&2
