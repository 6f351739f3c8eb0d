"""Continues training a cubit model on PyTorch's distributed engine, with cubit's semantics.

    torchrun --nproc_per_node 8 train_torch.py --from runs/mine --out runs/mine-torch --steps 20000
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 train_torch.py ...
    python3 train_torch.py --from runs/mine --out runs/mine-torch        (one process)

--from is a cubit run folder or checkpoint (weights, AdamW moments, step, data position and
training config all continue), a model folder (weights; fresh optimizer), or a config.json alone
(random init, cubit's initialisation; e.g. for benchmarks). Checkpoints go to --out in cubit's
format (latest.json -> checkpoints/step-N/ with model.safetensors, optimizer.safetensors,
config.json, state.json), so `cubit import` brings them back, and this script resumes from them.

The same training as `cubit train` (src/train/): AdamW with decoupled decay on tensors of rank >= 2
only, linear warm-up then cosine decay to minLr, global-norm clipping, gradAccum micro-batches per
step, a step with a non-finite loss or gradient skipped; the data is cubit's pipeline, ported: the
corpus (a text file, a folder of .txt/.md, or JSONL) split by document with cubit's seeded shuffle,
tokenized (bytes, or a tokenizer.json through the `tokenizers` package), and cut into packed rows
with document ids by cubit's seeded sampler, so a run continues on exactly the batches cubit would
have drawn. Distributed: every process draws the same global micro-batch and takes its share of
the rows (batchSize must divide by the number of processes); the loss is normalised by the global
count of targets, so N processes give the losses and updates of one. DDP by default; --fsdp shards
with FullyShardedDataParallel (PyTorch >= 2.1).
"""
import argparse
import contextlib
import json
import math
import os
import re
import resource
import shutil
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import modeling_cubit as mc  # noqa: E402

IGNORE_INDEX = -100
TRAIN_DEFAULTS = {
    "data": {"corpus": "brown", "tokenizer": "byte", "split": {"seed": 0, "validation": 0.05, "test": 0.05, "by": "auto"}, "mode": "packed"},
    "steps": 1000, "batchSize": 8, "seqLen": 128, "gradAccum": 1, "lr": 1e-3, "warmupSteps": 100,
    "weightDecay": 0.1, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "clip": 1.0, "evalEvery": 100,
    "evalBatches": 16, "checkpointEvery": 500, "logEvery": 10, "seed": 0, "maxNonFinite": 5,
}
M32 = 0xFFFFFFFF


# ---- cubit's generator and hash (src/core/random.ts), bit for bit ----

def _imul(a, b):
    return (a * b) & M32


def hash32(seed, index):
    h = (_imul(seed & M32, 0x9E3779B1) ^ _imul(index & M32, 0x85EBCA77)) & M32
    h ^= h >> 16
    h = _imul(h, 0x85EBCA6B)
    h ^= h >> 13
    h = _imul(h, 0xC2B2AE35)
    h ^= h >> 16
    return h


class Rng:
    """mulberry32, as cubit's Rng."""

    def __init__(self, seed):
        self.state = seed & M32

    def next(self):
        self.state = (self.state + 0x6D2B79F5) & M32
        t = self.state
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    def int(self, n):
        return math.floor(self.next() * n)


# ---- data (src/data/corpus.ts, batches.ts) ----

def _read(path):
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return f.read()


def load_corpus(spec, data):
    if spec == "brown":
        sys.exit("train_torch.py: the Brown corpus is read by cubit's npm package; give --data with a text file, folder or .jsonl")
    if not os.path.exists(spec):
        sys.exit(f"train_torch.py: corpus '{spec}': no such file or folder")
    if os.path.isdir(spec):
        exts = [e.lower() for e in data.get("extensions") or [".txt", ".md"]]
        found = []
        for root, dirs, files in os.walk(spec):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for f in files:
                if not f.startswith(".") and any(f.lower().endswith(e) for e in exts):
                    found.append(os.path.relpath(os.path.join(root, f), spec).replace(os.sep, "/"))
        found.sort(key=lambda s: s.encode("utf-16-be"))
        docs = [(r, re.sub(r"\r\n?", "\n", _read(os.path.join(spec, r)))) for r in found]
        docs = [d for d in docs if d[1].strip() != ""]
    elif re.search(r"\.(jsonl|ndjson)$", spec, re.I):
        field = data.get("textField") or "text"
        docs = []
        for i, line in enumerate(_read(spec).split("\n")):
            if line.strip():
                obj = json.loads(line)
                if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
                    sys.exit(f"train_torch.py: {spec}:{i + 1}: field \"{field}\" is missing or not a string")
                docs.append((f"{os.path.basename(spec)}:{i + 1}", obj[field]))
    else:
        text = re.sub(r"\r\n?", "\n", _read(spec))
        name = os.path.basename(spec)
        if data.get("fileSplit", "whole") == "blank-lines":
            parts = [re.sub(r"^\n+|\s+$", "", s) for s in re.split(r"\n[ \t]*\n", text)]
            docs = [(f"{name}#{i}", s + "\n") for i, s in enumerate(p for p in parts if p.strip())]
        else:
            docs = [(name, text)] if text.strip() else []
    if not docs:
        sys.exit(f"train_torch.py: corpus '{spec}': no documents")
    return docs


def _js_round(x):
    return math.floor(x + 0.5)


def _cut_point(text, at):
    if at <= 0:
        return 0
    if at >= len(text):
        return len(text)
    reach = max(200, math.floor(len(text) * 0.01))
    nl = text.find("\n", at)
    if 0 <= nl and nl - at <= reach:
        return nl + 1
    m = re.search(r"\s", text[at:at + reach])
    return at + m.start() + 1 if m else at


def split_train(docs, split):
    """The training documents of cubit's splitCorpus (by document, or by position for few documents)."""
    val, test, n = split.get("validation", 0.05), split.get("test", 0.05), len(docs)
    count = lambda f: max(1, _js_round(f * n)) if f > 0 else 0  # noqa: E731
    n_val, n_test = count(val), count(test)
    by = split.get("by", "auto")
    if by == "auto":
        by = "document" if n_val + n_test < n else "position"
    if by == "position":
        out = []
        for id_, text in docs:
            a = _cut_point(text, _js_round(len(text) * (1 - val - test)))
            if a > 0:
                out.append((f"{id_}#train", text[:a]))
        return out
    order = list(range(n))
    rng = Rng(hash32(split.get("seed", 0), 0x5EED))
    for i in range(n - 1, 0, -1):
        j = rng.int(i + 1)
        order[i], order[j] = order[j], order[i]
    held = set(order[: n_val + n_test])
    return [d for i, d in enumerate(docs) if i not in held]


class Tokenizer:
    """Bytes, or a Hugging Face tokenizer.json (needs the `tokenizers` package) with its BOS."""

    def __init__(self, identity, folder):
        self.bos = None
        if identity.get("kind", "byte") == "byte":
            self.encode = lambda s: list(s.encode("utf-8"))
            return
        path = os.path.join(folder, "tokenizer.json")
        try:
            from tokenizers import Tokenizer as HF
        except ImportError:
            sys.exit("train_torch.py: this model's tokenizer is a tokenizer.json: pip install tokenizers")
        tok = HF.from_file(path)
        self.encode = lambda s: tok.encode(s, add_special_tokens=False).ids
        cfg_path = os.path.join(folder, "tokenizer_config.json")
        if os.path.exists(cfg_path):
            with open(cfg_path) as f:
                bos = json.load(f).get("bos_token")
            bos = bos.get("content") if isinstance(bos, dict) else bos
            if isinstance(bos, str):
                self.bos = tok.token_to_id(bos)


def tokenize(docs, tok):
    tokens, offsets = [], [0]
    for _, text in docs:
        ids = tok.encode(text)
        tokens.extend(([tok.bos] if tok.bos is not None else []) + list(ids))
        offsets.append(len(tokens))
    return tokens, offsets


def fingerprint(tokens, offsets):
    h = 0x811C9DC5

    def mix(v):
        nonlocal h
        v &= M32
        h = _imul(h ^ (v & 0xFFFF), 0x01000193)
        h = _imul(h ^ (v >> 16), 0x01000193)

    mix(len(tokens))
    mix(len(offsets))
    for t in tokens:
        mix(t)
    for o in offsets:
        mix(o)
    return f"{len(tokens)}:{len(offsets) - 1}:{h:08x}"


class Sampler:
    """cubit's BatchSampler: the same rows in the same order from the same seed and state."""

    def __init__(self, tokens, offsets, B, T, seed, mode):
        self.tokens, self.offsets = torch.tensor(tokens, dtype=torch.int64), offsets
        self.B, self.T, self.seed, self.mode = B, T, seed & M32, mode
        self.epoch, self.cursor, self.layout_epoch = 0, 0, -1
        self.doc_of = torch.repeat_interleave(torch.arange(len(offsets) - 1), torch.tensor([offsets[i + 1] - offsets[i] for i in range(len(offsets) - 1)]))
        self.ends = torch.tensor(offsets[1:], dtype=torch.int64)
        self.data = fingerprint(tokens, offsets)
        N = len(tokens)
        if mode == "packed":
            if N < T + 1:
                sys.exit(f"train_torch.py: the data has {N} tokens, fewer than seqLen + 1 = {T + 1}")
        else:
            self.windows = [(d, s) for d in range(len(offsets) - 1) for s in range(0, offsets[d + 1] - offsets[d] - 1, T)]

    def _layout(self):
        if self.layout_epoch == self.epoch:
            return
        e = self.epoch
        if self.mode == "packed":
            N, T = len(self.tokens), self.T
            self.shift = Rng(hash32(self.seed, 2 * e + 1)).int(min(T - 1, N - 1 - T) + 1)
            count = (N - 1 - self.shift) // T
        else:
            count = len(self.windows)
        order = list(range(count))
        rng = Rng(hash32(self.seed, 2 * e))
        for i in range(count - 1, 0, -1):
            j = rng.int(i + 1)
            order[i], order[j] = order[j], order[i]
        self.order, self.layout_epoch = order, e

    def next(self):
        B, T = self.B, self.T
        inputs = torch.empty(B, T, dtype=torch.int64)
        targets = torch.empty(B, T, dtype=torch.int64)
        docs = torch.empty(B, T, dtype=torch.int64)
        for r in range(B):
            self._layout()
            if self.cursor >= len(self.order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._layout()
            k = self.order[self.cursor]
            self.cursor += 1
            if self.mode == "packed":
                p = torch.arange(self.shift + k * T, self.shift + k * T + T)
                d = self.doc_of[p]
                inputs[r], docs[r] = self.tokens[p], d
                targets[r] = torch.where(p + 1 < self.ends[d], self.tokens[p + 1], torch.tensor(IGNORE_INDEX))
            else:
                d, s = self.windows[k]
                off = self.offsets[d]
                n = min(T, self.offsets[d + 1] - off - 1 - s)
                inputs[r], targets[r], docs[r] = 0, IGNORE_INDEX, -1
                inputs[r, :n] = self.tokens[off + s: off + s + n]
                targets[r, :n] = self.tokens[off + s + 1: off + s + 1 + n]
                docs[r, :n] = d
        return inputs, targets, docs

    def state(self):
        return {"mode": self.mode, "seed": self.seed, "seqLen": self.T, "data": self.data, "epoch": self.epoch, "cursor": self.cursor}

    def set_state(self, s):
        """Continues from a saved position; with other data, mode, seed or seqLen (an override)
        the position means nothing, and the data starts from its first epoch (said on stderr)."""
        for key in ("mode", "seed", "seqLen", "data"):
            if s.get(key) != self.state()[key]:
                print(f"train_torch.py: note: {key} differs from the checkpoint's (saved {s.get(key)!r}, now {self.state()[key]!r}); the data starts from its first epoch", file=sys.stderr)
                return
        self.epoch, self.cursor = s["epoch"], s["cursor"]


class SyntheticData:
    """Uniform random tokens, one document per row (benchmarks: --synthetic)."""

    def __init__(self, B, T, vocab, seed):
        self.B, self.T, self.vocab = B, T, vocab
        self.g = torch.Generator().manual_seed(seed)

    def next(self):
        x = torch.randint(0, self.vocab, (self.B, self.T + 1), generator=self.g)
        return x[:, :-1], x[:, 1:], torch.zeros(self.B, self.T, dtype=torch.int64)

    def state(self):
        return {"mode": "synthetic", "seed": 0, "seqLen": self.T, "data": "synthetic", "epoch": 0, "cursor": 0}


# ---- schedule (src/train/schedule.ts) ----

def learning_rate(step, c):
    lr, min_lr = c["lr"], c.get("minLr", c["lr"] / 10) if c.get("minLr") is not None else c["lr"] / 10
    warm, decay = c["warmupSteps"], c.get("lrDecaySteps") or c["steps"]
    if step < warm:
        return lr * (step + 1) / warm
    if step >= decay:
        return min_lr
    span = decay - warm
    ratio = (step - warm) / span if span > 0 else 1
    return min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr - min_lr)


# ---- checkpoints in cubit's format (src/train/checkpoint.ts) ----

def read_source(path):
    """(model config dict, training dict, tokenizer identity, folder, state or None, step, software)."""
    pointer = os.path.join(path, "latest.json")
    if os.path.isfile(pointer):
        with open(pointer) as f:
            path = os.path.join(path, json.load(f)["checkpoint"])
    cfg_file = path if path.endswith(".json") else os.path.join(path, "config.json")
    with open(cfg_file) as f:
        raw = json.load(f)
    folder = os.path.dirname(cfg_file)
    model = raw.get("model", raw if "dModel" in raw or "vocabSize" in raw else None)
    if model is None:
        sys.exit(f"train_torch.py: {cfg_file}: no model config (expected a cubit config.json)")
    state = None
    if raw.get("format") == "cubit-checkpoint":
        with open(os.path.join(folder, "state.json")) as f:
            state = json.load(f)
    has_weights = raw.get("format") in ("cubit-checkpoint", "cubit-model") and os.path.exists(os.path.join(folder, "model.safetensors"))
    # A checkpoint or model folder records the training config under "training"; a training config
    # of `cubit train --config` (configs/*.json) is one itself, beside its "model".
    training = raw.get("training") if "format" in raw else {k: v for k, v in raw.items() if k != "model"} if "model" in raw else {}
    return {"model": model, "training": training or {}, "tokenizer": raw.get("tokenizer") or {"kind": "byte", "vocabSize": 256},
            "folder": folder, "state": state, "step": raw.get("step", 0), "software": raw.get("software") or {"name": "cubit", "version": "0.1.0"},
            "weights": has_weights}


def write_checkpoint(out, step, model_sd, moments, opt_step, config, state, tokenizer_folder):
    name = f"step-{step:08d}"
    root = os.path.join(out, "checkpoints")
    os.makedirs(root, exist_ok=True)
    target = os.path.join(root, name)
    tmp = os.path.join(root, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    mc.save_safetensors(os.path.join(tmp, "model.safetensors"), model_sd, {"format": "pt"})
    mc.save_safetensors(os.path.join(tmp, "optimizer.safetensors"), moments, {"format": "cubit-adamw", "step": str(opt_step)})
    for fname, obj in (("state.json", state), ("config.json", config)):
        mc._write_atomic(os.path.join(tmp, fname), [(json.dumps(obj, indent=2) + "\n").encode()])
    if config["tokenizer"].get("kind") == "hf":
        for f in ("tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(tokenizer_folder, f)):
                shutil.copyfile(os.path.join(tokenizer_folder, f), os.path.join(tmp, f))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    pointer = {"format": "cubit-run", "checkpoint": f"checkpoints/{name}", "step": step}
    mc._write_atomic(os.path.join(out, "latest.json"), [(json.dumps(pointer, indent=2) + "\n").encode()])
    for other in os.listdir(root):
        if other != name:
            shutil.rmtree(os.path.join(root, other), ignore_errors=True)
    return target


# ---- main ----

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="source", required=True, help="cubit run/checkpoint folder, model folder, or a config.json (random init)")
    ap.add_argument("--out", help="run folder for checkpoints in cubit's format")
    ap.add_argument("--steps", type=int, help="total optimizer steps of the run (the schedule's length)")
    ap.add_argument("--stop-at", type=int, help="end this sitting after this step (checkpoint written)")
    ap.add_argument("--data", help="the corpus (text file, folder, .jsonl); default: the run's")
    for key in ("batchSize", "seqLen", "gradAccum", "warmupSteps", "checkpointEvery", "logEvery", "seed"):
        ap.add_argument("--" + re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), key), dest=key, type=int)
    for key in ("lr", "minLr", "weightDecay", "clip"):
        ap.add_argument("--" + re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), key), dest=key, type=float)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--solve", choices=("stream", "dense"), default="stream", help="Cubit's solve: block-streamed (default) or the dense reference")
    ap.add_argument("--block", type=int, help="rows per block of the streamed solve (default: the model's blockSize; speed and rounding only)")
    ap.add_argument("--fsdp", action="store_true", help="shard with FullyShardedDataParallel (PyTorch >= 2.1) instead of DDP")
    ap.add_argument("--synthetic", action="store_true", help="random tokens instead of a corpus (benchmarks)")
    ap.add_argument("--no-tf32", action="store_true", help="full float32 matmuls on CUDA (default allows TF32)")
    ap.add_argument("--losses", help="append each step's loss as a JSON line to this file (rank 0)")
    ap.add_argument("--bench", action="store_true", help="print tokens/s and peak memory as JSON lines; write no checkpoint")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        torch.backends.cuda.matmul.allow_tf32 = not args.no_tf32
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    src = read_source(args.source)
    train = json.loads(json.dumps(TRAIN_DEFAULTS))
    train.update(src["training"])
    train["data"] = {**TRAIN_DEFAULTS["data"], **(src["training"].get("data") or {})}
    for key in ("steps", "batchSize", "seqLen", "gradAccum", "warmupSteps", "checkpointEvery", "logEvery", "seed", "lr", "minLr", "weightDecay", "clip"):
        if getattr(args, key, None) is not None:
            train[key] = getattr(args, key)
    if args.data:
        train["data"]["corpus"] = args.data
    B, T, accum = train["batchSize"], train["seqLen"], train["gradAccum"]
    if B % world:
        sys.exit(f"train_torch.py: batchSize {B} must divide by the {world} processes")

    cfg = mc.CubitConfig(**src["model"])
    model_record = cfg.to_dict()  # what checkpoints record (before --block)
    if args.block is not None:
        if args.block < 1:
            sys.exit("train_torch.py: --block must be a positive integer")
        cfg.blockSize = args.block  # a kernel setting, not the maths: the checkpoint keeps the recorded one
    torch.manual_seed(train["seed"])
    model = mc.CubitForCausalLM(cfg)
    if src["weights"]:
        tensors, _ = mc.load_safetensors(os.path.join(src["folder"], "model.safetensors"))
        model.load_state_dict({n: t.float() for n, t in tensors.items()}, strict=True)
    model.set_solve(args.solve).to(device).train()
    names = [n for n, _ in model.named_parameters()]

    fsdp = args.fsdp and world > 1
    if fsdp:
        if tuple(int(v) for v in re.findall(r"\d+", torch.__version__)[:2]) < (2, 1):
            sys.exit(f"train_torch.py: --fsdp needs PyTorch >= 2.1 (this is {torch.__version__}); leave it out for DDP")
        import functools
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP  # noqa: N814
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
        # One FSDP unit per block: each block's parameters are gathered only while it runs.
        policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={mc.Block})
        wrapped = FSDP(model, use_orig_params=True, auto_wrap_policy=policy, device_id=device if device.type == "cuda" else None)
    elif world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)
    else:
        wrapped = model

    # AdamW with cubit's decay rule: matrices (rank >= 2) decay, vectors and per-head scalars do not
    # (decided by the unsharded shapes, before FSDP flattens anything).
    decay_names = {n for n, p in mc.CubitForCausalLM(cfg).named_parameters() if p.dim() >= 2}
    named = [(_clean(n), p) for n, p in wrapped.named_parameters()]
    opt = torch.optim.AdamW([{"params": [p for n, p in named if n in decay_names], "weight_decay": train["weightDecay"]},
                             {"params": [p for n, p in named if n not in decay_names], "weight_decay": 0.0}],
                            lr=train["lr"], betas=(train["beta1"], train["beta2"]), eps=train["eps"])
    step, opt_step = 0, 0
    state = {"step": 0, "rng": {"state": hash32(train["seed"], 0x7472)}, "skippedSteps": 0, "nonFiniteInARow": 0, "tokensSeen": 0, "elapsedSeconds": 0}
    if src["state"] is not None:
        moments, meta = mc.load_safetensors(os.path.join(src["folder"], "optimizer.safetensors"))
        if meta.get("format") != "cubit-adamw":
            sys.exit(f"train_torch.py: {src['folder']}/optimizer.safetensors is not cubit's AdamW state")
        opt_step = int(meta["step"])
        shapes = dict((n, p.shape) for n, p in model.named_parameters()) if not fsdp else {n: t.shape for n, t in mc.CubitForCausalLM(cfg).state_dict().items()}
        full = {}
        for n in names:
            if f"m.{n}" not in moments or f"v.{n}" not in moments:
                sys.exit(f"train_torch.py: optimizer.safetensors has no moments for '{n}'")
            full[n] = {"step": torch.tensor(float(opt_step)), "exp_avg": moments[f"m.{n}"].float().reshape(shapes[n]).clone(),
                       "exp_avg_sq": moments[f"v.{n}"].float().reshape(shapes[n]).clone()}
        _load_moments(opt, wrapped, named, full, fsdp, device)
        state = {k: src["state"][k] for k in ("step", "rng", "skippedSteps", "nonFiniteInARow", "tokensSeen", "elapsedSeconds")}
        step = state["step"]

    if args.synthetic:
        data = SyntheticData(B, T, cfg.vocabSize, train["seed"] + step)
    else:
        tok = Tokenizer(src["tokenizer"], src["folder"])
        docs = split_train(load_corpus(train["data"]["corpus"], train["data"]), train["data"]["split"])
        tokens, offsets = tokenize(docs, tok)
        data = Sampler(tokens, offsets, B, T, train["seed"], train["data"].get("mode", "packed"))
        saved_pos = (src["state"] or {}).get("sampler") or {}
        if saved_pos.get("mode") in ("packed", "padded"):
            data.set_state(saved_pos)
    rng = Rng(0)
    rng.state = state["rng"]["state"]

    mine = slice(rank * B // world, (rank + 1) * B // world)
    end = min(train["steps"], args.stop_at if args.stop_at is not None else train["steps"])
    losses = open(args.losses, "a") if args.losses and rank == 0 else None
    metrics = _open_metrics(args, src, step) if rank == 0 and args.out and not args.bench else None

    def save():
        if args.bench or not args.out:
            return
        sd = _full_state_dict(wrapped, model, fsdp)
        osd = _moments(opt, wrapped, named, names, fsdp)
        if rank == 0:
            config = {"format": "cubit-checkpoint", "formatVersion": 1, "software": src["software"], "step": step,
                      "parameters": sum(p.numel() for p in model.parameters()), "model": model_record,
                      "training": {k: v for k, v in train.items() if k != "model"}, "tokenizer": src["tokenizer"]}
            st = dict(state, step=step, rng={"state": rng.state}, sampler=data.state())
            write_checkpoint(args.out, step, sd, osd, opt_step, config, st, src["folder"])
        if world > 1:
            dist.barrier()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = []
    while step < end:
        t0 = time.perf_counter()
        lr = learning_rate(step, train)
        rng.next()  # cubit's trainer draws the step's seed for stochastic layers: keep its generator in step
        total = 0.0
        for micro in range(accum):
            inputs, targets, docs = data.next()
            count = int((targets != IGNORE_INDEX).sum())
            x, y, d = (t[mine].to(device) for t in (inputs, targets, docs))
            if args.synthetic:
                d = None  # one document per row: the plain causal mask
            # Gradients are all-reduced once per step, at the last micro-batch (DDP's no_sync before it).
            sync = contextlib.nullcontext() if world == 1 or fsdp or micro == accum - 1 else wrapped.no_sync()
            with sync:
                logits = wrapped(x, d)
            # Sum over this process's targets / the global count: the mean of the whole micro-batch,
            # once DDP averages over the processes (hence the factor world).
                loss_sum = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
                (loss_sum * (world / max(count, 1) / accum)).backward()
            part = loss_sum.detach()
            if world > 1:
                dist.all_reduce(part)
            total += float(part) / max(count, 1) / accum
        params = [p for p in model.parameters() if p.grad is not None]
        if train["clip"] > 0:
            norm = float(_clip(wrapped, params, train["clip"], fsdp))
        elif fsdp:
            norm = float(_clip(wrapped, params, 1e30, fsdp))  # only measures: the gradients are sharded
        else:
            norm = float(torch.norm(torch.stack([p.grad.detach().float().norm() for p in params])))
        if math.isfinite(total) and math.isfinite(norm):
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            opt_step += 1
            state["nonFiniteInARow"] = 0
        else:
            state["skippedSteps"] += 1
            state["nonFiniteInARow"] += 1
            if state["nonFiniteInARow"] >= train["maxNonFinite"]:
                sys.exit(f"train_torch.py: training diverged at step {step + 1} (loss {total}, gradient norm {norm})")
        opt.zero_grad(set_to_none=True)
        step += 1
        state["tokensSeen"] += B * T * accum
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        state["elapsedSeconds"] += dt
        timings.append(dt)
        if losses:
            losses.write(json.dumps({"step": step, "loss": total, "lr": lr, "gradNorm": norm}) + "\n")
            losses.flush()
        if rank == 0 and not args.bench and (step % train["logEvery"] == 0 or step == end):
            record = {"kind": "train", "step": step, "loss": round(total, 6), "lr": lr, "gradNorm": round(norm, 6), "tokensPerSec": round(B * T * accum / dt),
                      "skippedSteps": state["skippedSteps"], "tokens": state["tokensSeen"], "trainer": "train_torch.py"}
            print(json.dumps(record), flush=True)
            if metrics:
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
        if train["checkpointEvery"] and step % train["checkpointEvery"] == 0 and step != end:
            save()
    save()
    if args.bench and rank == 0 and timings:
        steady = sorted(timings[1:] or timings)
        med = steady[len(steady) // 2]
        print(json.dumps({"trainer": "train_torch.py", "solve": args.solve, "mixers": cfg.layer_mixers()[0] if len(set(cfg.layer_mixers())) == 1 else cfg.layer_mixers(),
                          "T": T, "B": B, "block": cfg.blockSize, "d": cfg.dModel, "layers": cfg.nLayers, "processes": world, "device": str(device),
                          "tok_per_s": round(B * T * accum / med), "step_s": round(med, 4),
                          "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None,
                          "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}), flush=True)
    for f in (losses, metrics):
        if f:
            f.close()
    if world > 1:
        dist.destroy_process_group()


def _open_metrics(args, src, step):
    """--out/metrics.jsonl, as cubit keeps it: the source run's records up to the starting step
    (a killed sitting's later ones dropped), then this run's, appended."""
    os.makedirs(args.out, exist_ok=True)
    target = os.path.join(args.out, "metrics.jsonl")
    run_dir = os.path.dirname(os.path.dirname(src["folder"]))
    source = target if os.path.exists(target) else os.path.join(run_dir, "metrics.jsonl")
    kept = []
    if os.path.exists(source):
        with open(source) as f:
            for line in f:
                try:
                    if json.loads(line).get("step", 0) <= step:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except ValueError:
                    pass
    mc._write_atomic(target, [l.encode() for l in kept])
    return open(target, "a")


def _clip(wrapped, params, max_norm, fsdp):
    if fsdp:
        return wrapped.clip_grad_norm_(max_norm)
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def _full_state_dict(wrapped, model, fsdp):
    if fsdp:
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP  # noqa: N814
        with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
            sd = wrapped.state_dict()
    else:
        sd = model.state_dict()
    return {n: t.detach().float().cpu() for n, t in sd.items()}


def _clean(name):
    return name.replace("_fsdp_wrapped_module.", "").replace("module.", "", 1) if name.startswith(("module.", "_fsdp")) else name


def _moments(opt, wrapped, named, names, fsdp):
    """cubit's m.<name> / v.<name> tensors of the optimizer state (gathered whole under FSDP)."""
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP  # noqa: N814
        by_name = {_clean(k): v for k, v in FSDP.optim_state_dict(wrapped, opt)["state"].items()}
    else:
        by_name = {n: opt.state.get(p, {}) for n, p in named}
    shapes = {n: p.shape for n, p in named} if not fsdp else None
    out = {}
    for n in names:
        s = by_name.get(n, {})
        for key, slot in (("m", "exp_avg"), ("v", "exp_avg_sq")):
            if slot in s:
                out[f"{key}.{n}"] = s[slot].detach().float().cpu()
            else:
                out[f"{key}.{n}"] = torch.zeros(shapes[n] if shapes else out[f"m.{n}"].shape, dtype=torch.float32)
    return out


def _load_moments(opt, wrapped, named, full, fsdp, device):
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP  # noqa: N814
        groups = []
        for g in opt.param_groups:  # FSDP names a group's parameters by their (clean) names
            ids = {id(q) for q in g["params"]}
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": [n for n, p in named if id(p) in ids]})
        osd = {"state": full, "param_groups": groups}
        opt.load_state_dict(FSDP.optim_state_dict_to_load(wrapped, opt, osd))
        return
    for n, p in named:
        opt.state[p] = {k: (v.to(device) if k != "step" else v) for k, v in full[n].items()}


if __name__ == "__main__":
    main()
