#!/usr/bin/env bash
# The gateway benchmark N times in a row (release binaries already built), one line per round
# and the median saturation ratio: one run cannot tell 0.45× from 0.50× on a shared machine
# (the direct side alone moves by a third within minutes), N rounds can.
#   N=8 DURATION=8 bench/gateway/rounds.sh          # other variables pass through to run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-8}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$N"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  SKIP_BUILD=1 DURATION=${DURATION:-8} bench/gateway/run.sh >"$out/r$i.txt" 2>&1 ||
    { echo "round $i failed:" >&2; tail -20 "$out/r$i.txt" >&2; exit 1; }
  python3 - "$out/r$i.txt" "$load" "$i" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"saturation throughput[^|]*\| (\d+) \| (\d+) \|", t)
c = re.search(r"server CPU per request at saturation \(µs\) \|  \| (\d+)", t)
p = re.search(r"open loop \d+ req/s: p50 / p99 latency \(ms\) \| [^|]+\| [^|]+\| ([^|]+)\|", t)
d, g = int(m.group(1)), int(m.group(2))
print(f"round {sys.argv[3]} (load {sys.argv[2]}): direct {d} req/s, through downshift {g} req/s, "
      f"ratio {g / d:.3f}, server CPU {c.group(1) if c else '?'} µs/req, added p50 / p99 {p.group(1).strip() if p else '?'} ms")
PY
done | tee "$out/summary.txt"
python3 - "$out/summary.txt" <<'PY'
import re, statistics, sys
r = [float(re.search(r"ratio ([\d.]+)", l).group(1)) for l in open(sys.argv[1]) if "ratio" in l]
print(f"saturation ratio over {len(r)} rounds: median {statistics.median(r):.3f}, mean {statistics.mean(r):.3f}, "
      f"min {min(r):.3f}, max {max(r):.3f} (target ≥ 0.5)")
PY
