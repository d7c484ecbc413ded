#!/usr/bin/env python3
"""Side-by-side benchmark: downshift-slm vs llama.cpp (llama-cpp-python) on the same GGUF,
prompts and thread count. Engines run in separate processes (peak RSS per engine), alternating
for several rounds; the table reports medians.

Usage: bench.py --model M.gguf --downshift PATH/TO/examples/bench [--threads 2] [--rounds 3]
       bench.py --engine llama --model M.gguf --prompts P.json ...   (internal)
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
PARAGRAPH = ("The history of computing spans centuries, from the abacus and mechanical calculators "
             "to electronic computers built with vacuum tubes, transistors and integrated circuits. "
             "Each generation made machines smaller, faster and cheaper, and software grew from "
             "hand-written machine code to high-level languages, operating systems and networks. ")


def chatml(user):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n")


PROMPTS = [
    ("short", chatml("What is the capital of France?")),
    ("medium", chatml("Summarize the following text in two sentences.\n\n" + PARAGRAPH * 4)),
    ("long", chatml("Summarize the following text in two sentences.\n\n" + PARAGRAPH * 10)),
]


def run_llama(args):
    import llama_cpp
    import numpy as np
    prompts = json.load(open(args.prompts))
    t = time.perf_counter()
    llm = llama_cpp.Llama(args.model, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, logits_all=False, verbose=False)
    load_s = time.perf_counter() - t
    n_vocab = llm.n_vocab()
    ctx = llm._ctx.ctx

    def argmax():
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,))))

    def run(text, gen):
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
        t0 = time.perf_counter()
        llm.eval(ids)
        nxt = argmax()
        prefill = time.perf_counter() - t0
        out = [nxt]
        t1 = time.perf_counter()
        for _ in range(1, gen):
            llm.eval([nxt])
            nxt = argmax()
            out.append(nxt)
        decode = time.perf_counter() - t1
        return {"prompt_tokens": len(ids), "prefill_s": prefill, "ttft_s": prefill,
                "decode_tokens": gen - 1, "decode_s": decode, "tokens": out}

    run(prompts[0], 4)
    results = [run(p, args.gen_tokens) for p in prompts]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"engine": "llama.cpp", "load_s": load_s, "results": results, "peak_rss_mb": rss}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine")
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts")
    ap.add_argument("--downshift")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--json-out")
    ap.add_argument("--omp-passive", action="store_true",
                    help="OMP_WAIT_POLICY=PASSIVE for llama.cpp (steadier on a shared, busy machine)")
    args = ap.parse_args()
    if args.engine == "llama":
        return run_llama(args)

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([p for _, p in PROMPTS], f)
        prompts_file = f.name
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), RAYON_NUM_THREADS=str(args.threads))
    if args.omp_passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    cmds = {
        "downshift": [args.downshift, "--model", args.model, "--prompts", prompts_file,
                      "--gen-tokens", str(args.gen_tokens), "--threads", str(args.threads)],
        "llama.cpp": [sys.executable, os.path.abspath(__file__), "--engine", "llama", "--model", args.model,
                      "--prompts", prompts_file, "--gen-tokens", str(args.gen_tokens),
                      "--threads", str(args.threads)],
    }
    runs = {k: [] for k in cmds}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        order = list(cmds) if r % 2 == 0 else list(reversed(list(cmds)))
        for name in order:
            out = subprocess.run(cmds[name], check=True, capture_output=True, text=True, env=env).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)

    def med(name, i, f):
        return statistics.median(f(run["results"][i]) for run in runs[name])

    rows = []
    for i, (label, _) in enumerate(PROMPTS):
        n = runs["downshift"][0]["results"][i]["prompt_tokens"]
        rows.append((f"prefill tok/s ({label}, {n} tok)",
                     lambda e, i=i: med(e, i, lambda x: x["prompt_tokens"] / x["prefill_s"]), True))
    for i, (label, _) in enumerate(PROMPTS):
        rows.append((f"decode tok/s (after {label})",
                     lambda e, i=i: med(e, i, lambda x: x["decode_tokens"] / x["decode_s"]), True))
    for i, (label, _) in enumerate(PROMPTS):
        rows.append((f"time to first token ms ({label})",
                     lambda e, i=i: med(e, i, lambda x: x["ttft_s"] * 1000), False))
    rows.append(("peak RSS MB", lambda e: statistics.median(r["peak_rss_mb"] for r in runs[e]), False))
    rows.append(("load s", lambda e: statistics.median(r["load_s"] for r in runs[e]), False))

    def agree(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    same = [agree(runs["downshift"][0]["results"][i]["tokens"], runs["llama.cpp"][0]["results"][i]["tokens"])
            for i in range(len(PROMPTS))]
    print(f"\nSmolLM2-135M-Instruct Q4_1 GGUF, {args.threads} threads, {args.gen_tokens} greedy tokens per prompt, "
          f"median of {args.rounds} alternating rounds (1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs"
          f"{', llama.cpp with OMP_WAIT_POLICY=PASSIVE' if args.omp_passive else ''})")
    if load_before > 1.5:
        print("warning: the machine was busy; llama.cpp's spinning OpenMP threads suffer most from that")
    print(f"{'metric':<36} {'downshift':>10} {'llama.cpp':>10} {'ratio':>7}")
    table = []
    for label, f, higher_better in rows:
        a, b = f("downshift"), f("llama.cpp")
        ratio = a / b if b else float("nan")
        table.append({"metric": label, "downshift": a, "llama.cpp": b, "ratio": ratio})
        print(f"{label:<36} {a:>10.1f} {b:>10.1f} {ratio:>6.2f}x")
    print("(ratio = downshift / llama.cpp; higher is better for tok/s, lower for ms and MB)")
    print(f"greedy tokens identical to llama.cpp before the first divergence (near-tie), per prompt: "
          f"{same} of {args.gen_tokens}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"rows": table, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
