#!/usr/bin/env python3
"""An independent float64 NumPy forward pass of a cubit checkpoint, written from docs/FORMAT.md.

It reads model.safetensors by hand (no safetensors package) and config.json, and prints or writes
the logits of a batch of token ids. test/format.test.ts compares them with the TypeScript model,
which proves that the format document is complete and exact.

usage: reference_forward.py CHECKPOINT --ids 1,2,3[;4,5,6] [--doc-ids 0,0,1[;...]] [--out logits.f64]

CHECKPOINT is a checkpoint folder (model.safetensors + config.json) or a run folder (its
latest.json names the checkpoint). --ids holds one row per ';', all rows the same length.
--out writes the logits (B, T, V) as raw little-endian float64; otherwise they are printed as JSON.
Dense O(T^2) maths: meant for checking, not for speed.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32}

# Defaults of the model config (docs/FORMAT.md, "config.json"); checkpoints written by cubit list
# every key, so these only matter for hand-written configs.
DEFAULTS = {
    "vocabSize": 256, "dModel": 128, "nLayers": 4, "nHeads": 4, "ffnHidden": None,
    "rotaryBase": 10000.0, "tieEmbeddings": True, "normEps": 1e-6, "mixer": "softmax",
    "cubitLayers": None, "window": None, "blockSize": 64,
}
CUBIT_DEFAULTS = {"sharedKey": False, "refScale": 1.0, "lambda": 1e-6, "lrr": True, "lrrLower": 0.5, "lrrRange": 1.5}
LOCAL_LINEAR_DEFAULTS = {"ridge": 1.0, "rank": None}
REF_NORM_EPS = 1e-6  # the floor of ||r|| in Cubit's r_hat (fixed, not a config key)


def read_safetensors(path):
    """Returns {name: float64 array} from a safetensors file, parsed by hand."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        arr = np.frombuffer(raw, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=base + begin)
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out


def resolve_checkpoint(path):
    pointer = os.path.join(path, "latest.json")
    if os.path.isfile(pointer):
        with open(pointer) as f:
            return os.path.join(path, json.load(f)["checkpoint"])
    return path


def model_config(path):
    with open(os.path.join(path, "config.json")) as f:
        raw = json.load(f)
    cfg = dict(DEFAULTS)
    cfg.update(raw["model"] if "model" in raw else raw)
    cfg["cubit"] = {**CUBIT_DEFAULTS, **cfg.get("cubit", {})}
    cfg["localLinear"] = {**LOCAL_LINEAR_DEFAULTS, **cfg.get("localLinear", {})}
    if cfg["ffnHidden"] is None:
        cfg["ffnHidden"] = 4 * cfg["dModel"]
    return cfg


def layer_mixers(cfg):
    if isinstance(cfg["mixer"], list):
        return list(cfg["mixer"])
    kinds = []
    for i in range(cfg["nLayers"]):
        if cfg["mixer"] == "cubit" and cfg.get("cubitLayers"):
            s, e = cfg["cubitLayers"]
            kinds.append("cubit" if s <= i < e else "softmax")
        else:
            kinds.append(cfg["mixer"])
    return kinds


# ---- building blocks ----

def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def linear(x, w):
    """y = x W^T with W stored (out, in)."""
    return x @ w.T


def silu(x):
    return x / (1.0 + np.exp(-x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def rotary(x, base):
    """Rotate-half RoPE of x (..., T, D) at positions 0..T-1: pair i = (i, i + D/2), theta_i = base^(-2i/D)."""
    T, D = x.shape[-2], x.shape[-1]
    half = D // 2
    inv = base ** (-2.0 * np.arange(half) / D)
    ang = np.arange(T)[:, None] * inv[None, :]  # (T, D/2)
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def visible_mask(T, window, doc_ids):
    """(B, 1, T, T) boolean: query i sees key j when j <= i, j >= i - window + 1 and same document."""
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    m = j <= i
    if window is not None:
        m = m & (j >= i - window + 1)
    same = doc_ids[:, :, None] == doc_ids[:, None, :]  # (B, T, T)
    return (m[None] & same)[:, None]


def masked_softmax(logits, mask):
    z = np.where(mask, logits, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.where(mask, np.exp(z), 0.0)
    return e / e.sum(axis=-1, keepdims=True)


def split_heads(x, H):
    """(B, T, H*Dh) -> (B, H, T, Dh): head h owns features h*Dh .. (h+1)*Dh - 1."""
    B, T, HD = x.shape
    return x.reshape(B, T, H, HD // H).transpose(0, 2, 1, 3)


def merge_heads(x):
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)


# ---- mixers ----

def softmax_mixer(p, h, cfg, mask):
    H, base = cfg["nHeads"], cfg["rotaryBase"]
    q = rotary(split_heads(linear(h, p["wq.weight"]), H), base)
    k = rotary(split_heads(linear(h, p["wk.weight"]), H), base)
    v = split_heads(linear(h, p["wv.weight"]), H)
    D = q.shape[-1]
    a = masked_softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(D), mask)
    return linear(merge_heads(a @ v), p["wo.weight"])


def cubit_mixer(p, h, cfg, mask):
    H, base, c = cfg["nHeads"], cfg["rotaryBase"], cfg["cubit"]
    q = rotary(split_heads(linear(h, p["wq.weight"]), H), base)
    k = rotary(split_heads(linear(h, p["wk.weight"]), H), base)
    v = split_heads(linear(h, p["wv.weight"]), H)
    r = k if c["sharedKey"] else rotary(split_heads(linear(h, p["wr.weight"]), H), base)
    B, _, T, D = q.shape
    alpha = np.abs(p["refScale"]).reshape(1, H, 1, 1)  # alpha = |refScale| keeps W's diagonal the row's largest
    lam = np.exp(p["logLambda"]).reshape(1, H, 1, 1)
    norm = np.sqrt(np.sum(r * r, axis=-1, keepdims=True))
    r_hat = alpha * r / np.maximum(norm, REF_NORM_EPS)
    W = masked_softmax(r @ r_hat.transpose(0, 1, 3, 2), mask)  # no 1/sqrt(D)
    if c["lrr"]:
        z = linear(h, p["wlrr.weight"]).transpose(0, 2, 1)[..., None]  # (B, H, T, 1)
        s = p["lrrLower"].reshape(1, H, 1, 1) + p["lrrRange"].reshape(1, H, 1, 1) * sigmoid(z)
        Y = s * v
    else:
        Y = v
    M = W + lam * np.eye(T)[None, None]
    X = np.linalg.solve(M, Y)  # M is lower-triangular; a general solve is exact enough in float64
    A = masked_softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(D), mask)
    return linear(merge_heads(A @ X), p["wo.weight"])


def local_linear_mixer(p, h, cfg, mask):
    H, base, c = cfg["nHeads"], cfg["rotaryBase"], cfg["localLinear"]
    q_raw = split_heads(linear(h, p["wq.weight"]), H)
    k_raw = split_heads(linear(h, p["wk.weight"]), H)
    v = split_heads(linear(h, p["wv.weight"]), H)
    q, k = rotary(q_raw, base), rotary(k_raw, base)
    D = q.shape[-1]
    P = p.get("projection")  # (H, D, m) when rank < D
    if P is not None:
        qf = rotary(np.einsum("bhtd,hdm->bhtm", q_raw, P), base)
        kf = rotary(np.einsum("bhtd,hdm->bhtm", k_raw, P), base)
    else:
        qf, kf = q, k
    m = kf.shape[-1]
    w = masked_softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(D), mask)  # (B, H, T, T)
    k_bar = w @ kf  # (B, H, T, m)
    v_bar = w @ v
    second = np.einsum("bhij,bhjm,bhjn->bhimn", w, kf, kf)
    C = second - k_bar[..., :, None] * k_bar[..., None, :]
    a = np.linalg.solve(C + c["ridge"] * np.eye(m), (k_bar - qf)[..., None])[..., 0]  # (B, H, T, m)
    # out_i = v_bar_i - sum_j w_ij (a_i . (kf_j - k_bar_i)) v_j
    coef = w * (a @ kf.transpose(0, 1, 3, 2) - np.sum(a * k_bar, axis=-1, keepdims=True))
    out = v_bar - coef @ v
    return linear(merge_heads(out), p["wo.weight"])


MIXERS = {"softmax": softmax_mixer, "cubit": cubit_mixer, "local_linear": local_linear_mixer}


def forward(tensors, cfg, ids, doc_ids):
    B, T = ids.shape
    eps = cfg["normEps"]
    mask = visible_mask(T, cfg["window"], doc_ids)
    emb = tensors["embed.weight"]
    x = emb[ids]
    for i, kind in enumerate(layer_mixers(cfg)):
        pre = f"blocks.{i}."
        p = {n[len(pre) + len("mixer."):]: t for n, t in tensors.items() if n.startswith(pre + "mixer.")}
        x = x + MIXERS[kind](p, rms_norm(x, tensors[pre + "mixerNorm.weight"], eps), cfg, mask)
        h = rms_norm(x, tensors[pre + "ffnNorm.weight"], eps)
        gate = linear(h, tensors[pre + "ffn.gate.weight"])
        up = linear(h, tensors[pre + "ffn.up.weight"])
        x = x + linear(silu(gate) * up, tensors[pre + "ffn.down.weight"])
    x = rms_norm(x, tensors["finalNorm.weight"], eps)
    head = emb if cfg["tieEmbeddings"] else tensors["head.weight"]
    return x @ head.T


def parse_rows(s, name):
    rows = [[int(v) for v in row.split(",") if v.strip() != ""] for row in s.split(";")]
    if not rows or any(len(r) != len(rows[0]) for r in rows) or len(rows[0]) == 0:
        sys.exit(f"reference_forward: {name} must hold rows of equal, non-zero length")
    return np.array(rows, dtype=np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--ids", required=True, help="token ids: rows separated by ';', ids by ','")
    ap.add_argument("--doc-ids", help="document ids of each position (packed rows), same layout as --ids")
    ap.add_argument("--out", help="write the logits here as raw little-endian float64 (B, T, V)")
    args = ap.parse_args()
    path = resolve_checkpoint(args.checkpoint)
    cfg = model_config(path)
    tensors = read_safetensors(os.path.join(path, "model.safetensors"))
    ids = parse_rows(args.ids, "--ids")
    doc_ids = parse_rows(args.doc_ids, "--doc-ids") if args.doc_ids else np.zeros_like(ids)
    if doc_ids.shape != ids.shape:
        sys.exit("reference_forward: --doc-ids must have the shape of --ids")
    logits = forward(tensors, cfg, ids, doc_ids)
    if args.out:
        logits.astype("<f8").tofile(args.out)
    else:
        json.dump({"shape": list(logits.shape), "logits": logits.reshape(-1).tolist()}, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
