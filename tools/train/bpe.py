"""Byte-level BPE: training, encoding, and writing a Hugging Face tokenizer.json.

Written for webswarm's default model. The pre-tokenizer is GPT-2's regex and the
byte-to-unicode table is GPT-2's, so the saved tokenizer.json is read by any
implementation of Hugging Face's format (the TypeScript side uses
@lenml/tokenizers) and gives the same ids as `encode` here.
"""

from __future__ import annotations

import collections
import json

import regex

PRETOKENIZE = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
EOT = "<|endoftext|>"


def byte_to_unicode() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


B2U = byte_to_unicode()


def pretokens(text: str) -> list[str]:
    """Pieces of `text` as byte-level strings (GPT-2's alphabet)."""
    return ["".join(B2U[b] for b in piece.encode("utf-8")) for piece in PRETOKENIZE.findall(text)]


def train(text: str, vocab_size: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Returns (vocab in id order, merges in rank order). Id 0 is EOT."""
    word_counts = collections.Counter(pretokens(text))
    words = [list(w) for w in word_counts]
    counts = [word_counts[w] for w in word_counts]
    base = [B2U[b] for b in range(256)]
    vocab = [EOT] + base
    merges: list[tuple[str, str]] = []

    pair_counts: collections.Counter[tuple[str, str]] = collections.Counter()
    where: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_counts[(a, b)] += counts[i]
            where[(a, b)].add(i)

    while len(vocab) < vocab_size and pair_counts:
        # Highest count wins; ties go to the lexicographically smallest pair so
        # that training is deterministic.
        best = min(pair_counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        if pair_counts[best] < 2:
            break
        merged = best[0] + best[1]
        merges.append(best)
        vocab.append(merged)
        for i in list(where[best]):
            w = words[i]
            c = counts[i]
            for a, b in zip(w, w[1:]):
                pair_counts[(a, b)] -= c
                if pair_counts[(a, b)] <= 0:
                    del pair_counts[(a, b)]
            out: list[str] = []
            j = 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == best[0] and w[j + 1] == best[1]:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for a, b in zip(out, out[1:]):
                pair_counts[(a, b)] += c
                where[(a, b)].add(i)
        where.pop(best, None)
    return vocab, merges


class Encoder:
    def __init__(self, vocab: list[str], merges: list[tuple[str, str]]):
        self.ids = {t: i for i, t in enumerate(vocab)}
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.cache: dict[str, list[int]] = {}

    def _bpe(self, word: str) -> list[int]:
        hit = self.cache.get(word)
        if hit is not None:
            return hit
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.ranks.get(p, 1 << 30), p) for p in zip(parts, parts[1:])]
            rank, pair = min(ranked)
            if rank == 1 << 30:
                break
            out: list[str] = []
            j = 0
            while j < len(parts):
                if j + 1 < len(parts) and (parts[j], parts[j + 1]) == pair:
                    out.append(parts[j] + parts[j + 1])
                    j += 2
                else:
                    out.append(parts[j])
                    j += 1
            parts = out
        ids = [self.ids[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for w in pretokens(text):
            out.extend(self._bpe(w))
        return out


def tokenizer_json(vocab: list[str], merges: list[tuple[str, str]]) -> str:
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": 0,
                "content": EOT,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(vocab)},
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    return json.dumps(doc, ensure_ascii=False, indent=1)


def tokenizer_config_json() -> str:
    return json.dumps(
        {"bos_token": None, "eos_token": EOT, "unk_token": None, "model_max_length": 1024,
         "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False},
        indent=1,
    )
