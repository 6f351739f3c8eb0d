#!/usr/bin/env python3
"""Pairs the two sides of scripts/bench-webgpu-gpu.sh's run: reads every *.jsonl of its output folder
(cubit's `bench` lines on webgpu, bench-torch-kernels.py's and train_torch.py's lines) and prints
one JSON line per comparison of issue 13's targets, with both figures, their ratio and whether the
target is met (null when a side is missing or failed; its error is shown).

usage: bench-webgpu-compare.py OUT_DIR
"""
import glob
import json
import os
import sys


def load(folder):
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "**", "*.jsonl"), recursive=True)):
        if os.path.basename(path) == "compare.jsonl":
            continue
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    return rows


def first(rows, **want):
    for r in rows:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def value(row, key):
    return None if row is None else row.get(key)


def failure(row):
    return None if row is None else row.get("error")


def ratio(a, b):
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def main():
    rows = load(sys.argv[1])
    cubit = [r for r in rows if r.get("backend") == "webgpu"]
    torch = [r for r in rows if r.get("side") == "torch"]
    lm = [r for r in rows if r.get("trainer") == "train_torch.py"]
    adapter = next((r["adapter"] for r in cubit if "adapter" in r), None)
    gpu = next((r["gpu"] for r in torch if r.get("gpu")), None)
    out = [{"compare": "machine", "gpu": gpu, "webgpu_adapter": adapter}]

    for r in [r for r in cubit if r.get("op") == "sgemm"]:
        t = first(torch, op="sgemm", shape=r["shape"])
        x = ratio(value(r, "gflops"), value(t, "gflops"))
        out.append({"compare": "matmul fp32", "shape": r["shape"], "cubit_gflops": value(r, "gflops"), "torch_gflops": value(t, "gflops"),
                    "cubit_over_torch": x, "target": ">= 0.6", "met": None if x is None else x >= 0.6,
                    "errors": [e for e in (failure(r), failure(t)) if e]})

    mixers = [r for r in cubit + torch if "mixer" in r and "D" in r and "bench" not in r]  # not the training lines
    for T in sorted({r["T"] for r in mixers}):
        c, s = first(mixers, backend="webgpu", mixer="cubit", T=T), first(mixers, backend="webgpu", mixer="softmax", T=T)
        dense, stream, sdpa = first(torch, mixer="cubit-dense", T=T), first(torch, mixer="cubit-stream", T=T), first(torch, mixer="softmax", T=T)
        speedup = ratio(value(dense, "fwd_bwd_ms"), value(c, "fwd_bwd_ms"))
        cubit_target = ">= 2x the dense formula" if T == 8192 else "faster than the dense formula" if T >= 4096 else None
        need = 2.0 if T == 8192 else 1.0
        met = None
        if T >= 32768:
            cubit_target, met = "runs", value(c, "fwd_bwd_ms") is not None
        elif cubit_target and speedup is not None:
            met = speedup >= need if need > 1 else speedup > 1
        out.append({"compare": "cubit mixer fwd+bwd", "T": T, "cubit_webgpu_ms": value(c, "fwd_bwd_ms"), "torch_dense_ms": value(dense, "fwd_bwd_ms"),
                    "torch_stream_ms": value(stream, "fwd_bwd_ms"), "dense_over_cubit": speedup, "target": cubit_target, "met": met,
                    "errors": [e for e in (failure(c), failure(dense), failure(stream)) if e]})
        slow = ratio(value(s, "fwd_bwd_ms"), value(sdpa, "fwd_bwd_ms"))
        out.append({"compare": "softmax attention fwd+bwd", "T": T, "cubit_webgpu_ms": value(s, "fwd_bwd_ms"), "torch_sdpa_ms": value(sdpa, "fwd_bwd_ms"),
                    "cubit_over_sdpa": slow, "target": "<= 3x SDPA" if T == 4096 else None,
                    "met": (slow <= 3) if T == 4096 and slow is not None else None, "errors": [e for e in (failure(s), failure(sdpa)) if e]})

    for r in [r for r in cubit if r.get("bench") == "train"]:
        T, B, mixer = r["T"], r["B"], r["mixer"]
        mine = value(r, "tokens_per_s")
        for solve in ("stream", "dense") if mixer == "cubit" else ("stream",):
            t = first(lm, mixers=mixer, solve=solve, T=T, B=B)
            x = ratio(mine, value(t, "tok_per_s"))
            # The target names PyTorch's Cubit LM; both of its solves are shown (the dense one may
            # run out of memory at T = 4096), each against the same threshold.
            need = {4096: 1.0, 1024: 0.5}.get(T) if mixer == "cubit" else None
            target = None if need is None else f">= {need}"
            met = None if need is None or x is None else x >= need
            out.append({"compare": "LM training tokens/s", "mixer": mixer, "T": T, "B": B, "torch_solve": solve if mixer == "cubit" else None,
                        "cubit_webgpu": mine, "torch": value(t, "tok_per_s"), "cubit_over_torch": x, "target": target, "met": met,
                        "errors": [e for e in (failure(r), failure(t)) if e]})
    for o in out:
        print(json.dumps(o), flush=True)


if __name__ == "__main__":
    main()
