#!/usr/bin/env python3
"""Side-by-side LoRA training benchmark: downshift-train vs PyTorch + PEFT on CPU.

Both sides train SmolLM2-135M-Instruct on the same token data (DATA.json, written by
`train_bench data`: windows of exactly L tokens, loss on the last half), with the same LoRA
config (r 16, alpha 32, dropout 0, q/k/v/o/gate/up/down), batch, sequence length, optimizer
(AdamW lr 2e-4, betas 0.9/0.999, eps 1e-8, no weight decay, constant rate, grad-norm clip 1.0),
base (the GGUF dequantized to f32 on both sides) and thread count. Sides: PEFT in f32, PEFT
with bf16 autocast (`torch.autocast("cpu", dtype=torch.bfloat16)` around the forward pass, the
fastest CPU mode PyTorch offers), downshift at its default precision (bf16 products where the
CPU has them), downshift in f32 (the reference, same computation as PEFT f32), and downshift's
QLoRA on the quantized base in f32 products (unless --no-qlora). Each side runs in its own
process; sides alternate over rounds; the first W updates are excluded from timing. Peak RSS is
the child's ru_maxrss from wait4. The table reports medians over rounds; --json prints one
object on stdout (the table goes to stderr).

Usage: bench.py --model M.gguf --data DATA.json --downshift PATH/train_bench
                [--steps 3] [--warmup 1] [--threads 2] [--rounds 1] [--batch 4]
       bench.py --side peft --model M.gguf --data DATA.json ...   (internal: the PEFT process)
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_hf_model(gguf_path):
    """The GGUF dequantized to f32 by transformers (the same base downshift dequantizes)."""
    import torch
    from transformers import AutoModelForCausalLM
    d, f = os.path.split(os.path.abspath(gguf_path))
    return AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)


def vm_hwm_gib():
    """This process's peak RSS so far."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / (1024.0 * 1024.0)
    return 0.0


def run_peft(args):
    import torch
    torch.set_num_threads(args.threads)
    from peft import LoraConfig, get_peft_model
    data = json.load(open(args.data))
    ex = data["examples"]
    # the batches in downshift's order (its trainer's plan, written by `train_bench data`), so
    # that both sides see the same batch at each update
    plan = data.get("batches") or [list(range(i, i + args.batch)) for i in range(0, len(ex), args.batch)]
    if data.get("batch_size", args.batch) != args.batch or len(plan) < args.steps + args.warmup:
        sys.exit(f"{args.data} holds {len(plan)} batches of {data.get('batch_size')}, "
                 f"{args.steps + args.warmup} of {args.batch} needed")
    t0 = time.perf_counter()
    base = load_hf_model(args.model)
    # bf16 autocast: the products run in bf16 (master weights, LoRA and optimizer state f32)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16
                else contextlib.nullcontext())
    cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                     bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    load_s = time.perf_counter() - t0
    load_rss = vm_hwm_gib()
    step_s, losses = [], []
    for s in range(args.steps + args.warmup):
        batch = [ex[i] for i in plan[s]]
        ids = torch.tensor([e["ids"] for e in batch], dtype=torch.long)
        mask = torch.tensor([e["mask"] for e in batch], dtype=torch.bool)
        labels = ids.masked_fill(~mask, -100)  # mask[t] = 1: token t is a target
        t = time.perf_counter()
        with autocast:
            out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_s.append(time.perf_counter() - t)
        losses.append(out.loss.item())
        print(f"peft step {s + 1}/{args.steps + args.warmup} loss {losses[-1]:.4f}", file=sys.stderr)
    seq = ids.shape[1]
    timed = sum(step_s[args.warmup:])
    import peft
    import transformers
    print(json.dumps({
        "side": "PyTorch + PEFT (bf16 autocast)" if args.bf16 else "PyTorch + PEFT (f32 base)", "tokens_per_s": args.steps * args.batch * seq / timed,
        "steps": args.steps, "warmup": args.warmup, "batch": args.batch, "seq_len": seq,
        "step_s": step_s, "losses": losses, "load_s": load_s, "threads": torch.get_num_threads(),
        "peak_rss_after_load_gib": load_rss,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
    }))


def run_side(cmd, env):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    # drain the pipes in threads, then wait4 for this child's own rusage
    import threading
    bufs = {"out": [], "err": []}

    def drain(f, key):
        for line in f:
            bufs[key].append(line)
            if key == "err":
                sys.stderr.write("    " + line)
                sys.stderr.flush()

    ts = [threading.Thread(target=drain, args=(p.stdout, "out")),
          threading.Thread(target=drain, args=(p.stderr, "err"))]
    for t in ts:
        t.start()
    _, status, ru = os.wait4(p.pid, 0)
    for t in ts:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed with status {p.returncode}:\n{''.join(bufs['err'][-20:])}")
    lines = [l for l in "".join(bufs["out"]).splitlines() if l.strip().startswith("{")]
    r = json.loads(lines[-1])
    r["peak_rss_gib"] = ru.ru_maxrss / (1024.0 * 1024.0)  # KiB on Linux
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--downshift")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--no-qlora", action="store_true", help="skip the extra QLoRA row")
    ap.add_argument("--bf16", action="store_true", help="(PEFT side) bf16 autocast")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object on stdout (the table goes to stderr)")
    ap.add_argument("--omp-passive", action="store_true",
                    help="OMP_WAIT_POLICY=PASSIVE for torch (steadier on a shared, busy machine)")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    if args.side == "peft":
        return run_peft(args)

    t = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, RAYON_NUM_THREADS=t,
               CANDLE_NUM_THREADS=t, DOWNSHIFT_THREADS=t, TOKENIZERS_PARALLELISM="false")
    if args.omp_passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", t,
              "--batch", str(args.batch)]
    peft = [sys.executable, os.path.abspath(__file__), "--side", "peft", "--model", args.model,
            "--data", args.data] + common
    sides = {
        "peft": peft,
        "peft_bf16": peft + ["--bf16"],
        # the default precision: bf16 products where the CPU has them
        "downshift": [args.downshift, "train", args.model, args.data, "--dequantize"] + common,
        "downshift_f32": [args.downshift, "train", args.model, args.data, "--dequantize",
                          "--precision", "f32"] + common,
    }
    if not args.no_qlora:
        sides["qlora"] = [args.downshift, "train", args.model, args.data,
                          "--precision", "f32"] + common
    runs = {k: [] for k in sides}
    load_before = os.getloadavg()[0]
    t_start = time.time()
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(list(sides)))
        for name in order:
            print(f"round {r + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(run_side(sides[name], env))
            x = runs[name][-1]
            print(f"round {r + 1}/{args.rounds}: {name}: {x['tokens_per_s']:.1f} tok/s, "
                  f"{x['peak_rss_gib']:.2f} GiB", file=sys.stderr, flush=True)

    def med(name, key):
        return statistics.median(x[key] for x in runs[name])

    out = sys.stderr if args.json else sys.stdout

    def say(*a):
        print(*a, file=out)

    p_tps, p_rss = med("peft", "tokens_per_s"), med("peft", "peak_rss_gib")
    b_tps, b_rss = med("peft_bf16", "tokens_per_s"), med("peft_bf16", "peak_rss_gib")
    load_after = os.getloadavg()[0]
    v = runs["peft"][0].get("versions", {})
    seq = runs["peft"][0]["seq_len"]
    say(f"\nLoRA training, SmolLM2-135M-Instruct (Q4_1 GGUF; f32 base = dequantized on both sides), "
          f"r 16 / alpha 32 on q,k,v,o,gate,up,down, batch {args.batch} x {seq} tokens, AdamW, "
          f"{args.threads} threads; {args.steps} timed updates after {args.warmup} warm-up, "
          f"median of {args.rounds} round(s); torch {v.get('torch')}, transformers "
          f"{v.get('transformers')}, peft {v.get('peft')}; 1-min load average {load_before:.1f} "
          f"before, {load_after:.1f} after, on {os.cpu_count()} CPUs; "
          f"{time.time() - t_start:.0f} s in all"
          f"{'; torch with OMP_WAIT_POLICY=PASSIVE' if args.omp_passive else ''}\n")
    if max(load_before, load_after) > 1.5:
        say("warning: the machine was busy; torch's spinning OpenMP threads suffer most from that "
              "(per-round figures above, per-update times in the JSON output)\n")
    say("| side | tokens/s | peak RSS GiB | tokens/s vs PEFT f32 | peak RSS vs PEFT f32 "
        "| tokens/s vs PEFT bf16 | peak RSS vs PEFT bf16 |")
    say("|---|---:|---:|---:|---:|---:|---:|")
    table = []
    for name in sides:
        label = runs[name][0]["side"]
        tps, rss = med(name, "tokens_per_s"), med(name, "peak_rss_gib")
        table.append({"side": label, "tokens_per_s": tps, "peak_rss_gib": rss,
                      "tps_ratio": tps / p_tps, "rss_ratio": rss / p_rss,
                      "tps_ratio_bf16": tps / b_tps, "rss_ratio_bf16": rss / b_rss})
        say(f"| {label} | {tps:.1f} | {rss:.2f} | {tps / p_tps:.2f}x | {rss / p_rss:.2f}x "
            f"| {tps / b_tps:.2f}x | {rss / b_rss:.2f}x |")
    say("\n(target for downshift at its default precision: tokens/s >= 2x PEFT bf16, "
        "peak RSS <= 0.5x PEFT bf16)")
    say("\nloss per update, first round (same batches in the same order on every side; the f32 rows "
        "should agree closely, bf16 and QLoRA differ by their rounding):")
    for name in sides:
        say(f"  {runs[name][0]['side']}: " + " ".join(f"{l:.4f}" for l in runs[name][0]["losses"]))
    d = runs["downshift"]
    summary = {
        "peft_f32_tokens_per_s": p_tps,
        "peft_bf16_tokens_per_s": b_tps,
        "downshift_tokens_per_s": med("downshift", "tokens_per_s"),
        "downshift_f32_tokens_per_s": med("downshift_f32", "tokens_per_s"),
        "downshift_precision": d[0].get("precision"),
        "peft_f32_peak_rss_gib": p_rss,
        "peft_bf16_peak_rss_gib": b_rss,
        "downshift_peak_rss_gib": med("downshift", "peak_rss_gib"),
        "downshift_f32_peak_rss_gib": med("downshift_f32", "peak_rss_gib"),
        "speed_vs_peft_bf16": med("downshift", "tokens_per_s") / b_tps,
        "memory_vs_peft_bf16": med("downshift", "peak_rss_gib") / b_rss,
        "losses": {name: runs[name][0]["losses"] for name in sides},
        "max_loss_diff_vs_f32": max(abs(a - b) for a, b in
                                    zip(d[0]["losses"], runs["downshift_f32"][0]["losses"])),
        "per_round_tokens_per_s": {name: [x["tokens_per_s"] for x in runs[name]] for name in sides},
        "load_average": [load_before, load_after],
        "rows": table,
        "args": {k: v for k, v in vars(args).items() if k not in ("side", "bf16", "json")},
        "versions": v,
    }
    if "qlora" in sides:
        summary["downshift_qlora_f32_tokens_per_s"] = med("qlora", "tokens_per_s")
        summary["downshift_qlora_f32_peak_rss_gib"] = med("qlora", "peak_rss_gib")
    if args.json:
        print(json.dumps(summary))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(dict(summary, runs=runs), f, indent=1)


if __name__ == "__main__":
    main()
