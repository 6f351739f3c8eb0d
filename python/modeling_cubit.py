"""A cubit language model as a PyTorch nn.Module (PyTorch >= 1.13, torch alone).

Written by `cubit export <run> <dir> --to pytorch` beside model.safetensors, config.json and
tokenizer.json. The parameters carry cubit's names (docs/FORMAT.md), so the state dict of
CubitForCausalLM *is* model.safetensors, and the maths is cubit's forward pass: softmax attention,
Cubit (reference projection or shared key, LRR on or off), the local linear mixer, sliding windows,
packed documents (document ids), one mixer kind per layer.

Cubit's solve X = (W + lambda I)^-1 Y is block-streamed (CUBIT.md section 3): rows are solved a block
at a time against the rows already solved, and the backward pass recomputes each block's softmax
tile from the saved r, r_hat and row log-sum-exps, so no T x T matrix per head is ever held beyond
one block of rows. `solve="dense"` selects the plain formula (a full W and solve_triangular), the
reference the streamed path is tested against.

    import torch, modeling_cubit as mc
    model = mc.CubitForCausalLM.from_pretrained("exported/")   # folder with model.safetensors
    ids = torch.tensor([list("Hello".encode())])
    logits = model(ids)                                         # (1, 5, vocab)
    out = model.generate(ids, max_new_tokens=20)                # greedy, cached decoding

Decoding caches, per layer, what each mixer reads again (CUBIT.md section 4): softmax keeps the
rotated keys and the values; Cubit the rotated keys, the rotated r_hat and the solved X; the local
linear mixer the rotated keys, its features and the values. A new token costs O(t * D) per layer.
"""
import ctypes
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

REF_NORM_EPS = 1e-6  # the floor of ||r|| in r_hat (fixed, not a config key)

MODEL_DEFAULTS = {
    "vocabSize": 256, "dModel": 128, "nLayers": 4, "nHeads": 4, "ffnHidden": None,
    "rotaryBase": 10000.0, "tieEmbeddings": True, "normEps": 1e-6, "mixer": "softmax",
    "cubitLayers": None, "window": None, "blockSize": 64,
}
CUBIT_DEFAULTS = {"sharedKey": False, "refScale": 1.0, "lambda": 1e-6, "lrr": True, "lrrLower": 0.5, "lrrRange": 1.5}
LOCAL_LINEAR_DEFAULTS = {"ridge": 1.0, "rank": None}


# ---- config ----

class CubitConfig:
    """The model config (config.json's "model" object, cubit's keys; docs/FORMAT.md section 4)."""

    def __init__(self, **model):
        unknown = set(model) - set(MODEL_DEFAULTS) - {"cubit", "localLinear"}
        if unknown:
            raise ValueError(f"model config: unknown field(s) {sorted(unknown)}")
        c = dict(MODEL_DEFAULTS)
        c.update(model)
        c["cubit"] = {**CUBIT_DEFAULTS, **(model.get("cubit") or {})}
        c["localLinear"] = {**LOCAL_LINEAR_DEFAULTS, **(model.get("localLinear") or {})}
        if c["ffnHidden"] is None:
            c["ffnHidden"] = 4 * c["dModel"]
        if c["dModel"] % c["nHeads"] or (c["dModel"] // c["nHeads"]) % 2:
            raise ValueError(f"model config: dModel/nHeads must be an even integer, got {c['dModel']}/{c['nHeads']}")
        self.__dict__.update(c)
        self.headDim = c["dModel"] // c["nHeads"]

    def to_dict(self):
        """Every key with its value, as cubit writes a model config (absent optional keys left out)."""
        out = {k: self.__dict__[k] for k in list(MODEL_DEFAULTS) + ["cubit", "localLinear"]}
        if out["cubitLayers"] is None:
            del out["cubitLayers"]
        out["localLinear"] = {k: v for k, v in out["localLinear"].items() if v is not None}
        return out

    def layer_mixers(self):
        if isinstance(self.mixer, list):
            if len(self.mixer) != self.nLayers:
                raise ValueError(f"model config: mixer lists {len(self.mixer)} layers but nLayers is {self.nLayers}")
            return list(self.mixer)
        if self.mixer == "cubit" and self.cubitLayers:
            s, e = self.cubitLayers
            return ["cubit" if s <= i < e else "softmax" for i in range(self.nLayers)]
        return [self.mixer] * self.nLayers

    @staticmethod
    def from_file(path):
        """config.json of a model folder or checkpoint (its "model" object), or a bare model config."""
        with open(path) as f:
            raw = json.load(f)
        return CubitConfig(**(raw["model"] if "model" in raw else raw))


# ---- safetensors (read and written by hand: torch alone) ----

_ST_DTYPES = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "F16": torch.float16,
              "BF16": torch.bfloat16, "I64": torch.int64}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


def load_safetensors(path):
    """Returns ({name: tensor}, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    data = bytearray(raw[8 + n:])
    out = {}
    for name, info in header.items():
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype {info['dtype']}")
        b, e = info["data_offsets"]
        dt = _ST_DTYPES[info["dtype"]]
        t = torch.frombuffer(data, dtype=dt, count=(e - b) // torch.tensor([], dtype=dt).element_size(), offset=b) if e > b else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out, meta


def save_safetensors(path, tensors, metadata=None):
    """Writes tensors (name -> tensor) the way cubit does: 8-byte aligned header, tensors by name
    (wider elements first), atomically (temporary file, fsync, rename)."""
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in items:
        c = t.detach().cpu().contiguous()
        b = ctypes.string_at(c.data_ptr(), c.numel() * c.element_size()) if c.numel() else b""  # the bytes as they lie (no numpy)
        header[name] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 8)
    _write_atomic(path, [struct.pack("<Q", len(js)), js] + blobs)


def _write_atomic(path, chunks):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---- building blocks ----

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.gate = nn.Linear(d, hidden, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


def rotary_tables(D, base, start, T, device, dtype):
    """cos, sin (T, D) for positions start .. start+T-1, halves repeating the D/2 angles (angles in float64)."""
    inv = base ** (-2.0 * torch.arange(D // 2, dtype=torch.float64) / D)
    ang = torch.arange(start, start + T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    return cos.to(device=device, dtype=dtype), sin.to(device=device, dtype=dtype)


def rope(x, cos, sin):
    """Rotate-half RoPE (GPT-NeoX / HF LLaMA convention): x' = x cos + rotate_half(x) sin."""
    h = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


def visible(qpos, kpos, window, qdoc, kdoc):
    """(B or 1, 1, Tq, Tk) bool: query at position i sees key j when j <= i, j >= i - window + 1 and
    both lie in the same document. qpos/kpos: (Tq,), (Tk,); qdoc/kdoc: (B, Tq), (B, Tk) or None."""
    m = kpos[None, :] <= qpos[:, None]
    if window is not None:
        m = m & (kpos[None, :] >= qpos[:, None] - window + 1)
    m = m[None, None]
    if qdoc is not None:
        m = m & (qdoc[:, None, :, None] == kdoc[:, None, None, :])
    return m


def masked_softmax(s, mask):
    return torch.softmax(s.masked_fill(~mask, float("-inf")), -1)


def attend(q, k, v, mask, causal=False):
    """Masked softmax attention (B, H, Tq, D) x (B, H, Tk, D): the mask is shared by the heads.
    causal: the mask is exactly j <= i (PyTorch 2's fused kernels then need no mask at all)."""
    if hasattr(F, "scaled_dot_product_attention"):
        if causal:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), mask) @ v


# ---- Cubit's solve ----

def _tile_mask(i0, i1, k0, window, doc, device):
    pos_q = torch.arange(i0, i1, device=device)
    pos_k = torch.arange(k0, i1, device=device)
    return visible(pos_q, pos_k, window, None if doc is None else doc[:, i0:i1], None if doc is None else doc[:, k0:i1])


def _span_start(i0, window):
    return 0 if window is None else max(0, i0 - window + 1)


class StreamedSolve(torch.autograd.Function):
    """X = (W + lambda I)^-1 Y with W = masked row-softmax(r r_hat^T), a block of rows at a time.
    Saves r, r_hat, Y, X and the rows' log-sum-exps; the backward pass recomputes the tiles."""

    @staticmethod
    def forward(ctx, r, rhat, Y, lam, doc, window, block):
        B, H, T, _ = r.shape
        lam4 = lam.view(1, H, 1, 1)
        X = torch.empty_like(Y)
        lse = torch.empty(B, H, T, dtype=r.dtype, device=r.device)
        eye = torch.eye(block, dtype=r.dtype, device=r.device)
        for i0 in range(0, T, block):
            i1 = min(i0 + block, T)
            k0 = _span_start(i0, window)
            s = (r[:, :, i0:i1] @ rhat[:, :, k0:i1].transpose(-2, -1)).masked_fill(~_tile_mask(i0, i1, k0, window, doc, r.device), float("-inf"))
            l = torch.logsumexp(s, -1)
            lse[:, :, i0:i1] = l
            p = torch.exp(s - l[..., None])
            res = Y[:, :, i0:i1]
            if i0 > k0:
                res = res - p[..., : i0 - k0] @ X[:, :, k0:i0]
            diag = p[..., i0 - k0:] + lam4 * eye[: i1 - i0, : i1 - i0]
            X[:, :, i0:i1] = torch.linalg.solve_triangular(diag, res, upper=False)
        ctx.save_for_backward(r, rhat, Y, X, lam, lse, doc if doc is not None else torch.empty(0))
        ctx.has_doc, ctx.window, ctx.block = doc is not None, window, block
        return X

    @staticmethod
    def backward(ctx, G):
        r, rhat, Y, X, lam, lse, doc = ctx.saved_tensors
        doc = doc if ctx.has_doc else None
        window, block = ctx.window, ctx.block
        B, H, T, _ = r.shape
        lam4 = lam.view(1, H, 1, 1)
        eye = torch.eye(block, dtype=r.dtype, device=r.device)
        Z = torch.empty_like(G)
        acc = torch.zeros_like(G)  # sum over later rows i of P_ij Z_i, per column j
        dr = torch.zeros_like(r)
        drhat = torch.zeros_like(rhat)
        # Softmax backward's row sums in closed form: sum_j P_ij dP_ij = -Z_i . (P X)_i = -Z_i . (Y_i - lam X_i).
        for i0 in reversed(range(0, T, block)):
            i1 = min(i0 + block, T)
            k0 = _span_start(i0, window)
            s = (r[:, :, i0:i1] @ rhat[:, :, k0:i1].transpose(-2, -1)).masked_fill(~_tile_mask(i0, i1, k0, window, doc, r.device), float("-inf"))
            p = torch.exp(s - lse[:, :, i0:i1, None])
            diag = p[..., i0 - k0:] + lam4 * eye[: i1 - i0, : i1 - i0]
            z = torch.linalg.solve_triangular(diag.transpose(-2, -1), G[:, :, i0:i1] - acc[:, :, i0:i1], upper=True)
            Z[:, :, i0:i1] = z
            if i0 > k0:
                acc[:, :, k0:i0] += p[..., : i0 - k0].transpose(-2, -1) @ z
            c = -(z * (Y[:, :, i0:i1] - lam4 * X[:, :, i0:i1])).sum(-1, keepdim=True)
            dp = -(z @ X[:, :, k0:i1].transpose(-2, -1))
            ds = p * (dp - c)
            dr[:, :, i0:i1] += ds @ rhat[:, :, k0:i1]
            drhat[:, :, k0:i1] += ds.transpose(-2, -1) @ r[:, :, i0:i1]
        dlam = -(Z * X).sum(dim=(0, 2, 3))
        return dr, drhat, Z, dlam, None, None, None


def dense_solve(r, rhat, Y, lam, doc, window):
    """The reference: the whole T x T W per head, then a triangular solve."""
    T = r.shape[2]
    pos = torch.arange(T, device=r.device)
    W = masked_softmax(r @ rhat.transpose(-2, -1), visible(pos, pos, window, doc, doc))
    M = W + lam.view(1, -1, 1, 1) * torch.eye(T, dtype=r.dtype, device=r.device)
    return torch.linalg.solve_triangular(M, Y, upper=False)


# ---- mixers ----

class _Projections(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, H, Dh = cfg.dModel, cfg.nHeads, cfg.headDim
        self.H, self.Dh, self.cfg = H, Dh, cfg
        self.wq = nn.Linear(d, H * Dh, bias=False)
        self.wk = nn.Linear(d, H * Dh, bias=False)
        self.wv = nn.Linear(d, H * Dh, bias=False)
        self.wo = nn.Linear(H * Dh, d, bias=False)

    def heads(self, t):
        B, T, _ = t.shape
        return t.view(B, T, self.H, -1).transpose(1, 2)

    def merge(self, t):
        B, H, T, D = t.shape
        return self.wo(t.transpose(1, 2).reshape(B, T, H * D))


class SoftmaxMixer(_Projections):
    def forward(self, x, ctx, cache=None):
        q = rope(self.heads(self.wq(x)), ctx.cos, ctx.sin)
        k = rope(self.heads(self.wk(x)), ctx.cos, ctx.sin)
        v = self.heads(self.wv(x))
        if cache is not None:
            k, v = cache.extend("k", k), cache.extend("v", v)
        return self.merge(attend(q, k, v, ctx.mask, ctx.causal))


class CubitMixer(_Projections):
    def __init__(self, cfg):
        super().__init__(cfg)
        c, d, H = cfg.cubit, cfg.dModel, cfg.nHeads
        if not c["sharedKey"]:
            self.wr = nn.Linear(d, H * self.Dh, bias=False)
        if c["lrr"]:
            self.wlrr = nn.Linear(d, H, bias=False)
            self.lrrLower = nn.Parameter(torch.full((H,), float(c["lrrLower"])))
            self.lrrRange = nn.Parameter(torch.full((H,), float(c["lrrRange"])))
        self.refScale = nn.Parameter(torch.full((H,), float(c["refScale"])))
        self.logLambda = nn.Parameter(torch.full((H,), math.log(c["lambda"])))
        self.solve = "stream"

    def forward(self, x, ctx, cache=None):
        c, H = self.cfg.cubit, self.H
        q = rope(self.heads(self.wq(x)), ctx.cos, ctx.sin)
        k = rope(self.heads(self.wk(x)), ctx.cos, ctx.sin)
        v = self.heads(self.wv(x))
        r = k if c["sharedKey"] else rope(self.heads(self.wr(x)), ctx.cos, ctx.sin)
        # Normalise after rotation (rotation keeps the norm): r_hat = alpha r / max(||r||, 1e-6), with
        # alpha = |refScale| (cubit's reading: W's diagonal stays its row's largest entry, so the solve
        # stays well conditioned whatever sign training gives the parameter); written as cubit does,
        # so its gradient at 0 is 1, not abs's 0.
        alpha = torch.where(self.refScale >= 0, self.refScale, -self.refScale)
        rhat = alpha.view(1, H, 1, 1) * r / r.norm(dim=-1, keepdim=True).clamp_min(REF_NORM_EPS)
        Y = v
        if c["lrr"]:
            s = self.lrrLower.view(1, H, 1, 1) + self.lrrRange.view(1, H, 1, 1) * torch.sigmoid(self.wlrr(x)).transpose(1, 2)[..., None]
            Y = s * v
        lam = self.logLambda.exp()
        if cache is not None:
            X = cache.cubit_solve(r, rhat, Y, lam, ctx, self)
            k = cache.extend("k", k)
        elif self.solve == "dense":
            X = dense_solve(r, rhat, Y, lam, ctx.doc, ctx.window)
        else:
            X = StreamedSolve.apply(r, rhat, Y, lam, ctx.doc, ctx.window, ctx.block)
        return self.merge(attend(q, k, X, ctx.mask, ctx.causal))


class LocalLinearMixer(_Projections):
    def __init__(self, cfg):
        super().__init__(cfg)
        rank = cfg.localLinear.get("rank")
        self.rank = rank if rank is not None and rank < self.Dh else self.Dh
        if self.rank < self.Dh:
            self.projection = nn.Parameter(torch.randn(self.H, self.Dh, self.rank) / math.sqrt(self.Dh))
        self.ridge = float(cfg.localLinear["ridge"])

    def forward(self, x, ctx, cache=None):
        q_raw, k_raw = self.heads(self.wq(x)), self.heads(self.wk(x))
        v = self.heads(self.wv(x))
        q, k = rope(q_raw, ctx.cos, ctx.sin), rope(k_raw, ctx.cos, ctx.sin)
        if self.rank < self.Dh:
            cos, sin = ctx.features_tables(self.rank)
            qf = rope(torch.einsum("bhtd,hdm->bhtm", q_raw, self.projection), cos, sin)
            kf = rope(torch.einsum("bhtd,hdm->bhtm", k_raw, self.projection), cos, sin)
        else:
            qf, kf = q, k
        if cache is not None:
            k, kf, v = cache.extend("k", k), cache.extend("kf", kf), cache.extend("v", v)
        m = kf.shape[-1]
        p = masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(self.Dh), ctx.mask)  # (B, H, Tq, Tk)
        k_bar, v_bar = p @ kf, p @ v
        B, H, Tk, _ = kf.shape
        second = (p @ (kf[..., :, None] * kf[..., None, :]).reshape(B, H, Tk, m * m)).reshape(B, H, -1, m, m)
        C = second - k_bar[..., :, None] * k_bar[..., None, :] + self.ridge * torch.eye(m, dtype=x.dtype, device=x.device)
        a = torch.linalg.solve(C, (k_bar - qf)[..., None])[..., 0]
        coef = p * (a @ kf.transpose(-2, -1) - (a * k_bar).sum(-1, keepdim=True))
        return self.merge(v_bar - coef @ v)


MIXERS = {"softmax": SoftmaxMixer, "cubit": CubitMixer, "local_linear": LocalLinearMixer}


class Block(nn.Module):
    def __init__(self, cfg, kind):
        super().__init__()
        if kind not in MIXERS:
            raise ValueError(f"model config: unknown mixer '{kind}' (expected one of {sorted(MIXERS)})")
        self.mixerNorm = RMSNorm(cfg.dModel, cfg.normEps)
        self.mixer = MIXERS[kind](cfg)
        self.ffnNorm = RMSNorm(cfg.dModel, cfg.normEps)
        self.ffn = SwiGLU(cfg.dModel, cfg.ffnHidden)

    def forward(self, x, ctx, cache=None):
        x = x + self.mixer(self.mixerNorm(x), ctx, cache)
        return x + self.ffn(self.ffnNorm(x))


class _Context:
    """What every layer of one forward call shares: rotary tables, the mask, document ids."""

    def __init__(self, cfg, T, start, device, dtype, doc, kdoc, Tk):
        self.cfg, self.start, self.T, self.device, self.dtype = cfg, start, T, device, dtype
        self.window, self.block, self.doc = cfg.window, cfg.blockSize, doc
        self.cos, self.sin = rotary_tables(cfg.headDim, cfg.rotaryBase, start, T, device, dtype)
        qpos = torch.arange(start, start + T, device=device)
        kpos = torch.arange(start + T - Tk, start + T, device=device)
        self.mask = visible(qpos, kpos, cfg.window, doc, kdoc)
        self.causal = cfg.window is None and doc is None and Tk == T
        self._features = {}

    def features_tables(self, m):
        if m not in self._features:
            self._features[m] = rotary_tables(m, self.cfg.rotaryBase, self.start, self.T, self.device, self.dtype)
        return self._features[m]


class LayerCache:
    """One layer's decoding cache: tensors (B, H, t, .) grown along the sequence."""

    def __init__(self):
        self.t = {}

    def extend(self, key, new):
        old = self.t.get(key)
        self.t[key] = new if old is None else torch.cat([old, new], 2)
        return self.t[key]

    def cubit_solve(self, r, rhat, Y, lam, ctx, mixer):
        """Prefill: the streamed solve of the prompt. Then, per new token t (CUBIT.md section 4):
        w = softmax_{j visible} r_t . r_hat_j;  X_t = (s_t v_t - sum_{j<t} w_j X_j) / (w_t + lambda)."""
        if "X" not in self.t:
            self.extend("rhat", rhat)
            X = StreamedSolve.apply(r, rhat, Y, lam, ctx.doc, ctx.window, ctx.block) if mixer.solve == "stream" else dense_solve(r, rhat, Y, lam, ctx.doc, ctx.window)
            return self.extend("X", X)
        rh = self.extend("rhat", rhat)
        for i in range(r.shape[2]):  # one token at a time (decoding feeds one)
            n = self.t["X"].shape[2] + 1
            w = masked_softmax(r[:, :, i:i + 1] @ rh[:, :, :n].transpose(-2, -1), ctx.mask[..., i:i + 1, :n])  # (B, H, 1, n)
            prev = w[..., :-1] @ self.t["X"] if n > 1 else 0.0
            x_t = (Y[:, :, i:i + 1] - prev) / (w[..., -1:] + lam.view(1, -1, 1, 1))
            self.extend("X", x_t)
        return self.t["X"]


class CubitForCausalLM(nn.Module):
    """cubit's decoder: embed -> blocks (pre-norm mixer and SwiGLU) -> RMSNorm -> logits."""

    def __init__(self, config):
        super().__init__()
        cfg = config if isinstance(config, CubitConfig) else CubitConfig(**config)
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocabSize, cfg.dModel)
        self.blocks = nn.ModuleList([Block(cfg, kind) for kind in cfg.layer_mixers()])
        self.finalNorm = RMSNorm(cfg.dModel, cfg.normEps)
        if not cfg.tieEmbeddings:
            self.head = nn.Linear(cfg.dModel, cfg.vocabSize, bias=False)
        self.reset_parameters()

    def reset_parameters(self, generator=None):
        """cubit's initialisation (docs/MODEL.md): N(0, 0.02); wo and ffn.down N(0, 0.02/sqrt(2 layers));
        the local linear projection N(0, 1/Dh); norms 1; Cubit's per-head scalars their config values."""
        out_std = 0.02 / math.sqrt(2 * self.config.nLayers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("wo.weight") or name.endswith("ffn.down.weight"):
                    p.normal_(0.0, out_std, generator=generator)
                elif name.endswith("projection"):
                    p.normal_(0.0, 1.0 / math.sqrt(self.config.headDim), generator=generator)
                elif p.dim() >= 2:
                    p.normal_(0.0, 0.02, generator=generator)

    def set_solve(self, how):
        """'stream' (the default) or 'dense' (the reference formula) for every Cubit layer."""
        if how not in ("stream", "dense"):
            raise ValueError(f"solve must be 'stream' or 'dense', got {how!r}")
        for b in self.blocks:
            if isinstance(b.mixer, CubitMixer):
                b.mixer.solve = how
        return self

    def forward(self, ids, doc_ids=None, caches=None, start=0):
        """Logits (B, T, V) of token ids (B, T); doc_ids (B, T) for packed rows (one id per
        document). With `caches` (one LayerCache per layer), `ids` continue the cached tokens at
        position `start`."""
        B, T = ids.shape
        x = self.embed(ids)
        Tk = start + T if caches is not None else T
        kdoc = doc_ids
        if caches is not None and doc_ids is not None:
            raise ValueError("decoding with caches reads one document; doc_ids are for training rows")
        ctx = _Context(self.config, T, start, ids.device, x.dtype, doc_ids, kdoc, Tk)
        for i, b in enumerate(self.blocks):
            x = b(x, ctx, None if caches is None else caches[i])
        x = self.finalNorm(x)
        return x @ (self.embed.weight if self.config.tieEmbeddings else self.head.weight).t()

    def loss(self, ids, targets, doc_ids=None, ignore_index=-100):
        logits = self(ids, doc_ids)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)

    @torch.no_grad()
    def generate(self, ids, max_new_tokens=100, temperature=0.0, top_k=0, top_p=1.0, generator=None, stop_ids=()):
        """Continues each row of ids (B, T) with cached decoding; temperature 0 is greedy.
        Returns (B, T + new) ids."""
        caches = [LayerCache() for _ in self.blocks]
        logits = self(ids, caches=caches, start=0)[:, -1]
        out = [ids]
        pos = ids.shape[1]
        for _ in range(max_new_tokens):
            nxt = _pick(logits, temperature, top_k, top_p, generator)
            out.append(nxt)
            if stop_ids and all(int(t) in stop_ids for t in nxt.view(-1)):
                break
            logits = self(nxt, caches=caches, start=pos)[:, -1]
            pos += 1
        return torch.cat(out, 1)

    @staticmethod
    def from_pretrained(folder, map_location="cpu"):
        """A model folder (model.safetensors + config.json), a checkpoint folder or a cubit run folder."""
        folder = _resolve_folder(folder)
        model = CubitForCausalLM(CubitConfig.from_file(os.path.join(folder, "config.json")))
        tensors, _ = load_safetensors(os.path.join(folder, "model.safetensors"))
        tensors = {n: t.float() if t.is_floating_point() else t for n, t in tensors.items()}
        model.load_state_dict(tensors, strict=True)
        return model.to(map_location).eval()


def _pick(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    z = logits.float() / temperature
    if top_k:
        kth = torch.topk(z, min(top_k, z.shape[-1]), -1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p < 1.0:
        sz, idx = torch.sort(z, -1, descending=True)
        cum = torch.softmax(sz, -1).cumsum(-1)
        drop = cum - torch.softmax(sz, -1) >= top_p
        z = z.scatter(-1, idx, sz.masked_fill(drop, float("-inf")))
    return torch.multinomial(torch.softmax(z, -1), 1, generator=generator)


def _resolve_folder(path):
    pointer = os.path.join(path, "latest.json")
    if os.path.isfile(pointer):
        with open(pointer) as f:
            return os.path.join(path, json.load(f)["checkpoint"])
    return path
