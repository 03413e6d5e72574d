#!/usr/bin/python3
"""Trains webswarm's default model and writes the golden data of the tests.

Offline and seeded: the corpus is Jane Austen's six novels from Debian's
r-cran-janeaustenr, the tokenizer a byte-level BPE trained on it, the model a
small llama-family decoder trained with Debian's python3-torch. Outputs:

  models/<id>/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json, samples.txt, training.json}
  fixtures/models/tiny-gqa-bias, fixtures/models/tiny-untied   (random weights)
  fixtures/golden/<id>.json + <id>.logits.bin                  (PyTorch's logits and greedy tokens)

Run: /usr/bin/python3 tools/train/train_default_model.py [--steps N] [--phase all|tokenizer|tiny|model]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
from llama import CausalLM, Config, save_checkpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_ID = "austen-2m"
VOCAB = 2048
CONTEXT = 256
BATCH = 16
GOLDEN_PROMPTS = [
    "It is a truth universally acknowledged, that a single man",
    "Emma Woodhouse, handsome, clever, and rich,",
    "\"My dear Mr. Bennet,\" said his lady to him one day,",
]
GREEDY_TOKENS = 24
BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]


def dump_corpus(path: str) -> str:
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        expr = (
            "library(janeaustenr); for (b in c(%s)) { writeLines(get(b)); writeLines(c('', '<<<BOOK>>>', '')) }"
            % ",".join(f"'{b}'" for b in BOOKS)
        )
        out = subprocess.run(["Rscript", "-e", expr], check=True, capture_output=True).stdout.decode("utf-8")
        with open(path, "w", encoding="utf-8") as f:
            f.write(out)
    raw = open(path, encoding="utf-8").read()
    # Re-flow the hard-wrapped lines into paragraphs separated by blank lines.
    books = []
    for book in raw.split("<<<BOOK>>>"):
        paras, cur = [], []
        for line in book.split("\n"):
            line = line.strip()
            if line:
                cur.append(line)
            elif cur:
                paras.append(" ".join(cur))
                cur = []
        if cur:
            paras.append(" ".join(cur))
        if paras:
            books.append("\n\n".join(paras))
    return ("\n\n" + bpe.EOT).join(books)


def write_tokenizer(folder: str, vocab: list[str], merges: list[tuple[str, str]]) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(bpe.tokenizer_json(vocab, merges))
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        f.write(bpe.tokenizer_config_json())


def encode_with_eot(enc: bpe.Encoder, text: str) -> list[int]:
    ids: list[int] = []
    for i, part in enumerate(text.split(bpe.EOT)):
        if i:
            ids.append(0)
        ids.extend(enc.encode(part))
    return ids


def load_tokenizer(folder: str) -> tuple[list[str], list[tuple[str, str]]]:
    doc = json.load(open(os.path.join(folder, "tokenizer.json"), encoding="utf-8"))
    vocab = sorted(doc["model"]["vocab"], key=doc["model"]["vocab"].get)
    merges = [tuple(m.split(" ", 1)) for m in doc["model"]["merges"]]
    return vocab, merges  # type: ignore[return-value]


@torch.no_grad()
def golden(model: CausalLM, enc: bpe.Encoder, model_id: str) -> float:
    """Writes PyTorch's logits for the prompts and greedy continuations (full recomputation).

    Returns the smallest gap between the best and second-best logit over the
    greedy steps: a small gap would let rounding flip a token.
    """
    model.eval()
    out_dir = os.path.join(ROOT, "fixtures", "golden")
    os.makedirs(out_dir, exist_ok=True)
    blobs: list[bytes] = []
    offset = 0
    entries = []
    min_gap = math.inf
    for text in GOLDEN_PROMPTS:
        ids = enc.encode(text)
        logits = model(torch.tensor([ids]))[0]
        raw = logits.contiguous().numpy().astype("<f4").tobytes()
        seq = list(ids)
        for _ in range(GREEDY_TOKENS):
            last = model(torch.tensor([seq]))[0, -1]
            top2 = torch.topk(last, 2).values
            min_gap = min(min_gap, float(top2[0] - top2[1]))
            seq.append(int(last.argmax()))
        entries.append(
            {
                "text": text,
                "ids": ids,
                "logits": {"offsetBytes": offset, "shape": list(logits.shape)},
                "greedy": seq[len(ids):],
            }
        )
        blobs.append(raw)
        offset += len(raw)
    with open(os.path.join(out_dir, f"{model_id}.logits.bin"), "wb") as f:
        for b in blobs:
            f.write(b)
    with open(os.path.join(out_dir, f"{model_id}.json"), "w") as f:
        json.dump(
            {"model": model_id, "logitsFile": f"{model_id}.logits.bin", "dtype": "float32", "minGreedyGap": min_gap,
             "prompts": entries},
            f,
            indent=1,
        )
    return min_gap


def tiny_models(enc: bpe.Encoder, tok_dir: str) -> None:
    specs = [
        ("tiny-gqa-bias", Config(VOCAB, 64, 160, 4, 4, 2, model_type="qwen2", rms_norm_eps=1e-6,
                                 rope_theta=1e6, tie_word_embeddings=True), torch.bfloat16),
        ("tiny-untied", Config(VOCAB, 48, 128, 3, 6, 3, tie_word_embeddings=False), torch.float16),
    ]
    for name, cfg, dtype in specs:
        for seed in range(100):
            torch.manual_seed(1000 + seed)
            model = CausalLM(cfg)
            with torch.no_grad():
                for pname, p in model.named_parameters():
                    if pname.endswith("layernorm.weight") or pname.endswith("norm.weight"):
                        p.copy_(1.0 + 0.2 * torch.randn_like(p))
                    elif "embed" in pname or "lm_head" in pname:
                        p.normal_(0.0, 1.0)
                    else:
                        p.normal_(0.0, 1.5 / math.sqrt(p.shape[-1]))
            folder = os.path.join(ROOT, "fixtures", "models", name)
            save_checkpoint(model, folder, dtype, eos_token_id=0)
            for f in ("tokenizer.json", "tokenizer_config.json"):
                with open(os.path.join(tok_dir, f), "rb") as src, open(os.path.join(folder, f), "wb") as dst:
                    dst.write(src.read())
            gap = golden(model, enc, name)
            print(f"{name}: seed {1000 + seed}, smallest greedy gap {gap:.4f}")
            if gap > 2e-2:
                break


def batches(data: torch.Tensor, batch: int, gen: torch.Generator):
    while True:
        starts = torch.randint(0, len(data) - CONTEXT - 1, (batch,), generator=gen)
        x = torch.stack([data[s:s + CONTEXT] for s in starts])
        y = torch.stack([data[s + 1:s + CONTEXT + 1] for s in starts])
        yield x, y


@torch.no_grad()
def evaluate(model: CausalLM, data: torch.Tensor) -> float:
    model.eval()
    losses = []
    n = (len(data) - 1) // CONTEXT
    for i in range(0, n, 16):
        idx = range(i, min(n, i + 16))
        x = torch.stack([data[j * CONTEXT:(j + 1) * CONTEXT] for j in idx])
        y = torch.stack([data[j * CONTEXT + 1:(j + 1) * CONTEXT + 1] for j in idx])
        losses.append(F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1), reduction="sum").item())
    model.train()
    return sum(losses) / (n * CONTEXT)


@torch.no_grad()
def sample(model: CausalLM, enc: bpe.Encoder, vocab: list[str], prompt: str, n: int, gen: torch.Generator) -> str:
    model.eval()
    ids = enc.encode(prompt)
    for _ in range(n):
        logits = model(torch.tensor([ids[-CONTEXT:]]))[0, -1] / 0.8
        top = torch.topk(logits, 40)
        probs = F.softmax(top.values, -1)
        nxt = int(top.indices[torch.multinomial(probs, 1, generator=gen)])
        if nxt == 0:
            break
        ids.append(nxt)
    u2b = {u: b for b, u in bpe.B2U.items()}
    return bytes(u2b[c] for i in ids for c in vocab[i]).decode("utf-8", errors="replace")


def train_model(enc: bpe.Encoder, vocab: list[str], ids: list[int], steps: int, tok_dir: str) -> None:
    torch.manual_seed(1234)
    # Every 20th block of 2048 tokens is held out for validation.
    block = 2048
    train_ids: list[int] = []
    val_ids: list[int] = []
    for i in range(0, len(ids), block):
        (val_ids if (i // block) % 20 == 7 else train_ids).extend(ids[i:i + block])
    train_t = torch.tensor(train_ids)
    val_t = torch.tensor(val_ids)
    cfg = Config(VOCAB, 160, 432, 6, 5, 5, max_position_embeddings=CONTEXT * 2, tie_word_embeddings=True)
    model = CausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                std = 0.02 if "embed" in name else 0.02 / (math.sqrt(2 * cfg.num_hidden_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 1)
                p.normal_(0.0, std)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model: {nparams} parameters, train {len(train_ids)} tokens, val {len(val_ids)} tokens", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    peak = 3e-3
    gen = torch.Generator().manual_seed(99)
    data = batches(train_t, BATCH, gen)
    t0 = time.time()
    log = []
    for step in range(1, steps + 1):
        lr = peak * step / warmup if step <= warmup else peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup))))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = next(data)
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == steps:
            msg = {"step": step, "train_loss": round(loss.item(), 4), "seconds": round(time.time() - t0, 1)}
            if step % 250 == 0 or step == steps:
                msg["val_loss"] = round(evaluate(model, val_t), 4)
            log.append(msg)
            print(json.dumps(msg), flush=True)
    seconds = time.time() - t0
    folder = os.path.join(ROOT, "models", MODEL_ID)
    save_checkpoint(model, folder, torch.float32, eos_token_id=0)
    write_tokenizer(folder, vocab, load_tokenizer(tok_dir)[1])
    val = evaluate(model, val_t)
    gen_s = torch.Generator().manual_seed(7)
    samples = [sample(model, enc, vocab, p, 80, gen_s) for p in ["It was", "Mr. Darcy", "\"I cannot", "The morning"]]
    with open(os.path.join(folder, "samples.txt"), "w") as f:
        f.write("\n\n---\n\n".join(samples) + "\n")
    summary = {"model": MODEL_ID, "parameters": nparams, "steps": steps, "batch": BATCH, "context": CONTEXT,
               "train_tokens": len(train_ids), "val_tokens": len(val_ids), "val_loss": round(val, 4),
               "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(), "log": log}
    with open(os.path.join(folder, "training.json"), "w") as f:
        json.dump(summary, f, indent=1)
    gap = golden(model, enc, MODEL_ID)
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}), f"greedy gap {gap:.4f}", flush=True)
    print("\n---\n".join(samples))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--phase", choices=["all", "tokenizer", "tiny", "model"], default="all")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    random.seed(0)
    text = dump_corpus(os.path.join(ROOT, ".cache", "austen.txt"))
    tok_dir = os.path.join(ROOT, ".cache", "tokenizer")
    if args.phase in ("all", "tokenizer") or not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        t0 = time.time()
        vocab, merges = bpe.train(text.replace(bpe.EOT, ""), VOCAB)
        write_tokenizer(tok_dir, vocab, merges)
        print(f"tokenizer: {len(vocab)} tokens in {time.time() - t0:.1f}s", flush=True)
    vocab, merges = load_tokenizer(tok_dir)
    enc = bpe.Encoder(vocab, merges)
    if args.phase in ("all", "tiny"):
        tiny_models(enc, tok_dir)
    if args.phase in ("all", "model"):
        ids = encode_with_eot(enc, text)
        print(f"corpus: {len(text)} characters, {len(ids)} tokens", flush=True)
        train_model(enc, vocab, ids, args.steps, tok_dir)


if __name__ == "__main__":
    main()
