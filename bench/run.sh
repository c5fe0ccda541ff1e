#!/usr/bin/env bash
# Echo benchmark: this project's server vs Deno.upgradeWebSocket vs Node `ws`, in one interleaved run.
# Copies the read-only measuring tool ../shared/bench (beside the repo) into bench/.work, builds its
# load generator, installs the peers' npm deps, then runs its harness. Arguments go to the harness:
#   bash bench/run.sh                                       # the whole matrix, 2 rounds
#   bash bench/run.sh --quick                               # 1 short round
#   bash bench/run.sh --scenarios echo_1MiB_bin,broadcast_1k,connect_c50 --rounds 3
#   DUPLEX_BENCH_SERVERS="deno_builtin node_ws" bash bench/run.sh --quick   # leave duplex out
# DUPLEX_BENCH_SERVERS picks the servers (default "duplex deno_builtin node_ws"; any harness
# built-in such as python_websockets also works); pass no server names as arguments.
set -euo pipefail
[ "${1:-}" = "--" ] && shift # `deno task bench -- --quick` passes the "--" through

bench="$(cd "$(dirname "$0")" && pwd)"
shared="$(dirname "$(dirname "$bench")")/shared/bench"
work="$bench/.work"
scenarios="echo_32B_text,echo_1KiB_bin,echo_64KiB_bin,echo_1MiB_bin,echo_latency,broadcast_1k,connect_c50,idle_10k"
servers="${DUPLEX_BENCH_SERVERS:-duplex deno_builtin node_ws}"

if [ ! -f "$shared/harness.py" ]; then
  echo "bench: measuring tool not found at $shared (expected ../shared/bench beside the repo checkout)" >&2
  exit 1
fi

# Fresh copy of the tool (it is read-only in place); keeps the built loadgen and node_modules.
mkdir -p "$work"
cp -R --preserve=timestamps --no-preserve=mode "$shared/." "$work/"
cp "$bench/peers/deno_npm_ws.ts" "$work/peers/"
# npm:ws under Deno when ws is not installed: away from peers/package.json,
# beside which Deno would want the node_modules that are missing.
mkdir -p "$work/npm_ws_under_deno"
cp "$bench/peers/deno_npm_ws.ts" "$work/npm_ws_under_deno/"
make -s -C "$work/loadgen" >&2

names=() # built-in harness servers (positional, so they go last)
extra=() # --server NAME=CMD
for name in $servers; do
  case "$name" in
    duplex)
      if [ ! -f "$bench/../mod.ts" ]; then
        echo "bench: $(cd "$bench/.." && pwd)/mod.ts is missing; set DUPLEX_BENCH_SERVERS to leave duplex out" >&2
        exit 1
      fi
      extra+=(--server "duplex=deno run -A --quiet $(printf %q "$bench/servers/duplex.ts") {port}") ;;
    floor_held | floor_read | floor_streams) # idle_10k and connect_c50 only
      extra+=(--server "$name=deno run -A --quiet $(printf %q "$bench/servers/floor.ts") ${name#floor_} {port}") ;;
    node_ws | deno_npm_ws)
      if command -v npm >/dev/null && [ ! -d "$work/peers/node_modules/ws" ]; then
        echo "# installing ws + bufferutil into $work/peers/node_modules" >&2
        (cd "$work/peers" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
          echo "# npm ci failed (no registry?)" >&2
      fi
      if [ "$name" = node_ws ] && ! command -v node >/dev/null; then
        echo "# node not found: running npm:ws under Deno instead (deno_npm_ws)" >&2
        name=deno_npm_ws
      fi
      if [ -d "$work/peers/node_modules/ws" ]; then
        names+=("$name")
      else # ws not installed (no npm, or npm ci failed): Deno fetches npm:ws itself
        [ "$name" = node_ws ] && echo "# ws is not installed: running npm:ws under Deno instead (deno_npm_ws)" >&2
        extra+=(--server "deno_npm_ws=deno run -A --quiet $(printf %q "$work/npm_ws_under_deno/deno_npm_ws.ts") {port}")
      fi ;;
    *) names+=("$name") ;;
  esac
done

status=0
/usr/bin/python3 "$work/harness.py" --scenarios "$scenarios" --baseline deno_builtin \
  --out "$work/results" "${extra[@]}" "$@" "${names[@]}" || status=$?
# The harness's table leaves a failed round out of a median without a word,
# and shows a load generator that gave up (exit 1, all zeros) as a result:
# name them, and fail.
/usr/bin/python3 - "$work/results" <<'PY' || status=1
import glob, json, sys
runs = sorted(glob.glob(sys.argv[1] + "/*.json"))
if not runs:
    sys.exit(0)
records = json.load(open(runs[-1])).get("records") or []
bad = [r for r in records if not r.get("superseded")
       and (r.get("error") or r.get("loadgen_rc", 0) != 0)]
for r in bad:
    why = r.get("error") or f"loadgen exit {r.get('loadgen_rc')}: {r.get('loadgen_stderr', '').strip()[-200:]}"
    print(f"bench: FAILED {r['scenario']} {r['server']} round {r['round']}: {why}", file=sys.stderr)
if bad:
    print(f"bench: {len(bad)} failed run(s) above are not in the table's medians, or are zeros in it", file=sys.stderr)
    sys.exit(1)
PY
exit "$status"
