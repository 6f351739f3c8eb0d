"""What test/interop.test.ts asks of an exported PyTorch folder; prints one JSON object.

  logits FOLDER IDS DOCIDS OUT   float32 logits of the streamed and the dense Cubit solve, written as
                                 raw float64 (2, B, T, V) to OUT; IDS/DOCIDS are rows ';', ids ','
  grads FOLDER IDS DOCIDS        float64: relative gap between the streamed and dense paths' gradients
  saved FOLDER T BLOCK           the largest tensor kept for the backward, streamed and dense (per head)
  generate FOLDER IDS N          greedy tokens of cached generate() and of recomputing the forward
  llama FOLDER IDS OUT           logits of a forward written from the public LLaMA definition, reading
                                 the folder's LlamaForCausalLM tensors and config.json
"""
import json
import math
import os
import sys

import torch

# The exported copy first (the folder), else the package's python/ (for the LLaMA folder, which has none).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
sys.path.insert(0, sys.argv[2])
import modeling_cubit as mc  # noqa: E402  (the exported copy)

torch.set_num_threads(1)


def rows(s):
    return torch.tensor([[int(v) for v in r.split(",")] for r in s.split(";")])


def rel(a, b):
    return float((a - b).norm() / max(float(b.norm()), 1e-30))


def logits(folder, ids, doc, out):
    model = mc.CubitForCausalLM.from_pretrained(folder)
    ids, doc = rows(ids), rows(doc)
    with torch.no_grad():
        streamed = model.set_solve("stream")(ids, doc)
        dense = model.set_solve("dense")(ids, doc)
    torch.stack([streamed, dense]).double().numpy().astype("<f8").tofile(out)
    return {"shape": list(streamed.shape), "streamedVsDense": rel(streamed, dense)}


def grads(folder, ids, doc):
    ids, doc = rows(ids), rows(doc)
    result = {}
    got = {}
    for how in ("stream", "dense"):
        model = mc.CubitForCausalLM.from_pretrained(folder).double().set_solve(how)
        # Blocks of 4 rows, so the streamed solve crosses several blocks (and the window, if any).
        model.config.blockSize = 4
        loss = model.loss(ids[:, :-1], ids[:, 1:], doc[:, :-1])
        loss.backward()
        got[how] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        result[how + "Loss"] = float(loss)
    worst = max(rel(got["stream"][n], got["dense"][n]) for n in got["dense"])
    result["gradRelGap"] = worst
    result["names"] = len(got["dense"])
    return result


def saved(folder, T, block):
    """Largest tensor autograd keeps for the backward of the streamed solve and of the dense one,
    in elements per (batch, head), at sequence length T."""
    torch.manual_seed(0)
    B, H, D, T, block = 2, 3, 8, int(T), int(block)
    r = torch.randn(B, H, T, D, requires_grad=True)
    rhat = torch.randn(B, H, T, D, requires_grad=True)
    Y = torch.randn(B, H, T, D, requires_grad=True)
    lam = torch.full((H,), 0.1, requires_grad=True)
    out = {}
    for how in ("stream", "dense"):
        sizes = []

        def pack(t):
            sizes.append(t.numel() // (B * H) if t.dim() == 4 else t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            X = mc.StreamedSolve.apply(r, rhat, Y, lam, None, None, block) if how == "stream" else mc.dense_solve(r, rhat, Y, lam, None, None)
        X.sum().backward()
        out[how] = max(sizes)
    return out


def generate(folder, ids, n):
    model = mc.CubitForCausalLM.from_pretrained(folder)
    ids = rows(ids)
    cached = model.generate(ids, max_new_tokens=int(n))[0, ids.shape[1]:].tolist()
    seq = ids
    with torch.no_grad():
        for _ in range(int(n)):
            nxt = model(seq)[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
    return {"cached": cached, "recomputed": seq[0, ids.shape[1]:].tolist()}


def llama(folder, ids, out):
    """A LLaMA forward from its public definition (HF modeling_llama: RMSNorm, rotate_half RoPE with
    inv_freq = 1/theta^(arange(0, D, 2)/D), SwiGLU MLP, causal softmax attention), no cubit code."""
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    w, _ = mc.load_safetensors(os.path.join(folder, "model.safetensors"))
    w = {k: v.double() for k, v in w.items()}
    ids = rows(ids)
    B, T = ids.shape
    H, D = c["num_attention_heads"], c["hidden_size"] // c["num_attention_heads"]
    eps = c["rms_norm_eps"]

    def norm(x, g):
        return g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = w["model.embed_tokens.weight"][ids]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].t()).view(B, T, H, D).transpose(1, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].t()).view(B, T, H, D).transpose(1, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].t()).view(B, T, H, D).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        a = torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(D)).masked_fill(~causal, float("-inf")), -1)
        x = x + (a @ v).transpose(1, 2).reshape(B, T, H * D) @ w[p + "self_attn.o_proj.weight"].t()
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        g = h @ w[p + "mlp.gate_proj.weight"].t()
        x = x + (torch.nn.functional.silu(g) * (h @ w[p + "mlp.up_proj.weight"].t())) @ w[p + "mlp.down_proj.weight"].t()
    x = norm(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    (x @ head.t()).numpy().astype("<f8").tofile(out)
    return {"shape": [B, T, head.shape[0]]}


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"logits": logits, "grads": grads, "saved": saved, "generate": generate, "llama": llama}[cmd]
    print(json.dumps(fn(*args)))
