#!/usr/bin/env python3
"""PyTorch's side of `cubit bench ops` and `cubit bench mixer`, timed the same way on the same GPU
(scripts/bench-webgpu-gpu.sh runs both in one call): the float32 n x n x n matmul, and forward +
backward of the token mixers at B x H x T x D from a fixed output gradient:

  softmax        scaled_dot_product_attention, causal (PyTorch's fused kernels; modeling_cubit.attend)
  cubit-dense    Cubit as cubit's bench times it (r_hat = r / ||r||, s = 0.5 + 1.5 sigmoid(z), the
                 solve, then causal attention over X), the solve by the dense formula: the whole
                 T x T matrix W + lambda I and one triangular solve (python/modeling_cubit.py)
  cubit-stream   the same with modeling_cubit's block-streamed solve (O(T D) memory)

Each call is followed by a device synchronisation inside its time, as cubit's benchmarks wait for
the GPU; the median of the timed calls is printed with the peak memory, one JSON line per case. A
case that fails (out of memory) prints its error and the run goes on.

usage: bench-torch-kernels.py [--device cuda] [--sizes 4096] [--shapes 8x8x1024x64,...]
                              [--mixers softmax,cubit-dense,cubit-stream] [--tf32] [--min-ms 1000]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import modeling_cubit as mc  # noqa: E402


def timed_median(fn, sync, min_runs=5, min_ms=1000.0, max_runs=50, warmup=1):
    """Median ms of fn() + sync() over at least min_runs calls and min_ms, after warmup calls; a call
    slower than half a second ends the run after 3 (as cubit's mixer bench does for slow cases)."""
    for _ in range(warmup):
        fn()
        sync()
    times = []
    start = time.perf_counter()
    while len(times) < max_runs:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
        slow = times[0] > 500
        if len(times) >= (3 if slow else min_runs) and (slow or (time.perf_counter() - start) * 1000 >= min_ms):
            break
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2


def causal_attention(T, dev):
    """Causal softmax attention through modeling_cubit.attend: SDPA on PyTorch 2 (no mask tensor);
    on older PyTorch (CPU smoke runs) the masked formula with a T x T mask."""
    pos = torch.arange(T, device=dev)
    mask = None if hasattr(F, "scaled_dot_product_attention") else mc.visible(pos, pos, None, None, None)
    return lambda q, k, v: mc.attend(q, k, v, mask, causal=True)


def mixer_step(kind, B, H, T, D, dev, block):
    """The leaves (requiring grad) and one forward + backward of the mixer, as src/bench/mixer.ts."""
    g = torch.Generator(device=dev).manual_seed(0)
    leaf = lambda *shape: torch.randn(*shape, device=dev, generator=g).requires_grad_()  # noqa: E731
    q, k, v = leaf(B, H, T, D), leaf(B, H, T, D), leaf(B, H, T, D)
    grad = torch.randn(B, H, T, D, device=dev, generator=g)
    attend = causal_attention(T, dev)
    if kind == "softmax":
        return lambda: attend(q, k, v).backward(grad)
    r, z = leaf(B, H, T, D), leaf(B, H, T)
    ref_scale = torch.ones(H, device=dev, requires_grad=True)
    log_lambda = torch.full((H,), math.log(1e-6), device=dev, requires_grad=True)
    lower = torch.full((H,), 0.5, device=dev, requires_grad=True)
    width = torch.full((H,), 1.5, device=dev, requires_grad=True)

    def step():
        rhat = ref_scale.view(1, H, 1, 1) * r / r.norm(dim=-1, keepdim=True).clamp_min(mc.REF_NORM_EPS)
        Y = (lower.view(1, H, 1, 1) + width.view(1, H, 1, 1) * torch.sigmoid(z)[..., None]) * v
        lam = log_lambda.exp()
        if kind == "cubit-dense":
            X = mc.dense_solve(r, rhat, Y, lam, None, None)
        else:
            X = mc.StreamedSolve.apply(r, rhat, Y, lam, None, None, block)
        attend(q, k, X).backward(grad)
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default="4096", help="matmul sizes n, comma-separated ('' for none)")
    ap.add_argument("--shapes", default="8x8x1024x64,8x8x4096x64,8x8x8192x64,8x8x32768x64", help="mixer shapes BxHxTxD ('' for none)")
    ap.add_argument("--mixers", default="softmax,cubit-dense,cubit-stream")
    ap.add_argument("--block", type=int, default=64, help="rows per block of the streamed solve")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (default: full float32)")
    ap.add_argument("--min-ms", type=float, default=1000.0)
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gpu = torch.cuda.get_device_name(dev) if cuda else None
    common = {"side": "torch", "torch": torch.__version__, "device": args.device, "gpu": gpu, "tf32": args.tf32}

    def peak_reset():
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def emit(rec):
        print(json.dumps({**rec, **common}), flush=True)

    for n in [int(s) for s in args.sizes.split(",") if s]:
        rec = {"op": "sgemm", "shape": f"{n}x{n}x{n}"}
        try:
            a = torch.randn(n, n, device=dev)
            b = torch.randn(n, n, device=dev)
            ms = timed_median(lambda: a @ b, sync, min_ms=args.min_ms, warmup=2)
            emit({**rec, "median_ms": round(ms, 3), "gflops": round(2 * n ** 3 / ms / 1e6, 1)})
            del a, b
        except Exception as e:  # noqa: BLE001 (any failure is a result line)
            emit({**rec, "error": str(e).split("\n")[0][:300]})

    for shape in [s for s in args.shapes.split(",") if s]:
        B, H, T, D = (int(x) for x in shape.split("x"))
        for kind in args.mixers.split(","):
            rec = {"mixer": kind, "B": B, "H": H, "T": T, "D": D}
            peak_reset()
            try:
                step = mixer_step(kind, B, H, T, D, dev, args.block)
                ms = timed_median(step, sync, min_ms=args.min_ms)
                emit({**rec, "fwd_bwd_ms": round(ms, 2), "peak_bytes": torch.cuda.max_memory_allocated(dev) if cuda else None})
            except Exception as e:  # noqa: BLE001
                emit({**rec, "error": str(e).split("\n")[0][:300]})
            step = None
            peak_reset()


if __name__ == "__main__":
    main()
