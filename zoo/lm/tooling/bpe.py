"""Byte-level BPE (GPT-2 style) trained from scratch and saved as a Hugging Face tokenizer.json.

The encoder here mirrors what @huggingface/tokenizers does with the saved file: added (special) tokens are split
out first, the ByteLevel pre-tokenizer splits the rest with GPT-2's regex and maps every UTF-8 byte to a printable
character, and BPE applies merges lowest rank first (leftmost first on ties). The regex classes \\p{L}, \\p{N} and
JavaScript's \\s are rebuilt from Python's unicodedata, so the two agree on every character both Unicode versions
assign; tooling/tokenizer.test.ts checks the ids on the committed splits and the parity fixture, and
check-tokenizer.ts on the train split.
"""

import collections
import heapq
import re
import sys
import unicodedata

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (the same table tokenizers.js builds)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}


def _class_of(pred):
    """A regex character-class body listing every code point for which pred holds, as ranges."""
    out, start, prev = [], None, None
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if pred(chr(cp)):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            out.append((start, prev))
            start = None
    if start is not None:
        out.append((start, prev))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in out)


# JavaScript's \s (WhiteSpace + LineTerminator), which differs from Python's \s (e.g. \x1c-\x1f, \x85).
_JS_SPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_L = _class_of(lambda c: unicodedata.category(c).startswith("L"))
_N = _class_of(lambda c: unicodedata.category(c).startswith("N"))
# /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu  (tokenizers.js ByteLevel)
PRE_TOKENIZE = re.compile(
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{_L}]+| ?[{_N}]+| ?[^{_JS_SPACE}{_L}{_N}]+|[{_JS_SPACE}]+(?![^{_JS_SPACE}])|[{_JS_SPACE}]+"
)
_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


def pre_tokenize(text):
    return ["".join(BYTE_ENCODER[b] for b in piece.encode("utf-8")) for piece in PRE_TOKENIZE.findall(text)]


def train(texts, vocab_size):
    """Learns merges until the vocabulary (specials + 256 bytes + merges) reaches vocab_size."""
    words = collections.Counter()
    for text in texts:
        for part in _SPECIAL_SPLIT.split(text):
            if part and part not in SPECIAL_TOKENS:
                words.update(pre_tokenize(part))
    seqs = [list(w) for w in words]
    counts = list(words.values())
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, seq in enumerate(seqs):
        for a, b in zip(seq, seq[1:]):
            pairs[(a, b)] += counts[i]
            where[(a, b)].add(i)
    # Max-heap with lazy invalidation; ties go to the lexicographically smaller pair so the result is deterministic.
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    merges = []
    # Two merges can produce the same string ("a"+"bc", "ab"+"c"); the vocabulary counts distinct tokens.
    known = set(SPECIAL_TOKENS) | set(BYTE_ENCODER.values())
    while len(known) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -neg or -neg <= 0:
            continue
        merges.append(pair)
        a, b = pair
        merged = a + b
        known.add(merged)
        changed = set()
        for i in list(where[pair]):
            seq, c = seqs[i], counts[i]
            if len(seq) < 2:
                continue
            for x, y in zip(seq, seq[1:]):
                pairs[(x, y)] -= c
                changed.add((x, y))
            new, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and seq[j] == a and seq[j + 1] == b:
                    new.append(merged)
                    j += 2
                else:
                    new.append(seq[j])
                    j += 1
            seqs[i] = new
            for x, y in zip(new, new[1:]):
                pairs[(x, y)] += c
                where[(x, y)].add(i)
                changed.add((x, y))
        pairs.pop(pair, None)
        where.pop(pair, None)
        for p in changed:
            if pairs.get(p, 0) > 0:
                heapq.heappush(heap, (-pairs[p], p))
    return merges


class Tokenizer:
    def __init__(self, merges):
        self.merges = merges
        self.ranks = {p: i for i, p in enumerate(merges)}
        vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
        for b in range(256):
            vocab[BYTE_ENCODER[b]] = len(vocab)
        for a, b in merges:
            vocab.setdefault(a + b, len(vocab))
        self.vocab = vocab
        self.inverse = {i: t for t, i in vocab.items()}
        self.cache = {}
        self.bos_id = vocab["<|bos|>"]
        self.eos_id = vocab["<|eos|>"]
        self.pad_id = vocab["<|pad|>"]

    def _bpe(self, word):
        cached = self.cache.get(word)
        if cached is not None:
            return cached
        parts = list(word)
        while len(parts) > 1:
            best, best_i = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        ids = [self.vocab[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text, add_bos=True):
        """Ids as tokenizers.js gives them for encode(text) (add_special_tokens: BOS first) or without BOS."""
        ids = [self.bos_id] if add_bos else []
        for part in _SPECIAL_SPLIT.split(text):
            if not part:
                continue
            if part in SPECIAL_TOKENS:
                ids.append(self.vocab[part])
            else:
                for word in pre_tokenize(part):
                    ids += self._bpe(word)
        return ids

    def decode(self, ids):
        out, buf = [], bytearray()
        for i in ids:
            tok = self.inverse[i]
            if tok in SPECIAL_TOKENS:
                out.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
                out.append(tok)
            else:
                buf += bytes(BYTE_DECODER[c] for c in tok)
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def to_json(self):
        """The Hugging Face tokenizer.json (BPE model, ByteLevel pre-tokenizer/decoder, BOS added by the template)."""
        added = [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for i, t in enumerate(SPECIAL_TOKENS)
        ]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [
                    {"SpecialToken": {"id": "<|bos|>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<|bos|>", "type_id": 1}},
                    {"Sequence": {"id": "B", "type_id": 1}},
                ],
                "special_tokens": {"<|bos|>": {"id": "<|bos|>", "ids": [self.bos_id], "tokens": ["<|bos|>"]}},
            },
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": self.vocab,
                "merges": [f"{a} {b}" for a, b in self.merges],
            },
        }

    @staticmethod
    def config_json(max_length):
        """tokenizer_config.json: clean_up_tokenization_spaces off, or decode would rewrite ' .' to '.' (lossy)."""
        return {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|bos|>",
            "eos_token": "<|eos|>",
            "pad_token": "<|pad|>",
            "additional_special_tokens": SPECIAL_TOKENS[3:],
            "add_bos_token": True,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": max_length,
        }
