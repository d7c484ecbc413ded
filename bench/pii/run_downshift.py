#!/usr/bin/env python3
"""Run the downshift detector (the `pii detect` JSON Lines contract) over the corpus.

The accuracy run feeds the corpus once. The throughput run feeds it `--repeat` times in one
process and divides by the wall-clock time of that process (start-up included).
"""
import argparse
import json
import subprocess
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="command that reads {\"text\"} lines on stdin")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    lines = [json.dumps({"text": json.loads(line)["text"]}, ensure_ascii=False) for line in open(args.corpus, encoding="utf-8")]
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    res = subprocess.run(args.bin, shell=True, input=payload, capture_output=True, check=True)
    with open(args.out, "wb") as f:
        f.write(res.stdout)
    big = payload * args.repeat
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(args.bin, shell=True, input=big, capture_output=True, check=True)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    n = len(lines) * args.repeat
    with open(args.stats, "w") as f:
        json.dump({"texts": n, "seconds": best, "texts_per_s": n / best, "bytes_per_s": len(big) / best}, f)


if __name__ == "__main__":
    main()
