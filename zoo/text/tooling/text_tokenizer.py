"""The text zoo's subword tokenizer: a SentencePiece unigram model trained on the pooled corpora, written as a
Hugging Face `tokenizer.json` whose every step the JavaScript library `@huggingface/tokenizers` 0.2.0 (the runner's)
reproduces exactly. `encode` below is THE encoding the models were trained with; it follows that library step by
step (the parity fixture and the node check in check-tokenizer.mjs compare the two):

1. split the raw text on the special tokens' literal strings (the library's added-tokens splitter);
2. normalize each other section: NFKC, every run of whitespace (the ECMAScript set, plus U+2581 '▁') to one
   space, strip both ends; an empty section yields nothing;
3. Metaspace: spaces to '▁', one '▁' prepended;
4. unigram Viterbi over the vocabulary (SentencePiece's own, trained with identity normalization so it segments
   exactly the string of step 3); consecutive unknown characters fuse into one [UNK];
5. [CLS] … [SEP] around the whole.

Truncation (to MAX_LENGTH: [CLS], the first MAX_LENGTH − 2 pieces, [SEP]) and right-padding with [PAD] = 0 are the
caller's (the runner's), as they are not part of tokenizer.json.
"""
import io
import json
import re
import unicodedata

import sentencepiece as spm

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)
MAX_LENGTH = 64
# ECMAScript WhiteSpace + LineTerminator (what the library's Strip, String.prototype.trim, removes), and U+2581,
# SentencePiece's space marker, so that no input can fake one.
WHITESPACE = ("\t\n\u000b\u000c\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
              "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff\u2581")
_WS_RUN = re.compile("[" + re.escape(WHITESPACE) + "]+")
_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")
# Score given to the special tokens in tokenizer.json. The library's unigram lattice matches every vocabulary entry,
# specials included, against the normalized text (SentencePiece never matches control symbols). A text that only
# normalizes into "[MASK]" (e.g. full-width "［MASK］") must not become the special token: at this score a path
# through single characters always wins. Unknown characters are forced nodes, so the lower minimum score (the
# library puts [UNK] at min − 10) changes no segmentation.
SPECIAL_SCORE = -1000.0


def normalize(text):
    text = unicodedata.normalize("NFKC", text)
    return _WS_RUN.sub(" ", text).strip(" ")


def train(texts, vocab_size, model_prefix=None):
    """A SentencePiece unigram model (bytes) trained on the normalized texts, deterministically (one thread, no
    input sampling)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t for t in (normalize(x) for x in texts) if t]),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=0.9999,
        normalization_rule_name="identity",
        remove_extra_whitespaces=True,
        add_dummy_prefix=True,
        byte_fallback=False,
        split_digits=False,
        max_sentence_length=8192,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        pad_id=PAD_ID, pad_piece=SPECIALS[PAD_ID],
        unk_id=UNK_ID, unk_piece=SPECIALS[UNK_ID],
        bos_id=CLS_ID, bos_piece=SPECIALS[CLS_ID],
        eos_id=SEP_ID, eos_piece=SPECIALS[SEP_ID],
        control_symbols=[SPECIALS[MASK_ID]],
        minloglevel=2,
    )
    return model.getvalue()


def vocab_of(model_bytes):
    """[(piece, score)] of a trained SentencePiece model, the specials first at SPECIAL_SCORE."""
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    assert [sp.id_to_piece(i) for i in range(len(SPECIALS))] == SPECIALS
    return [(sp.id_to_piece(i), SPECIAL_SCORE if i < len(SPECIALS) else sp.get_score(i))
            for i in range(sp.get_piece_size())]


class Tokenizer:
    """Encodes with the vocabulary and scores of tokenizer.json, by a port of the library's unigram lattice
    (Unigram.populate_nodes, TokenLattice.viterbi, fuse_unk). Not SentencePiece's own encoder: it sums scores in
    float32 and so breaks ties between equal-score segmentations (runs like "=====" or "....") differently; on the
    corpora it segments a few hundred texts differently (zoo.json, tokenizer.sentencepiece_encoder_differs_on). Python floats are doubles, as JavaScript numbers are, and the
    sums are taken in the same order, so this port decides every tie as the library does."""

    def __init__(self, vocab):
        self.vocab = vocab
        self.ids = {piece: i for i, (piece, _) in enumerate(vocab)}
        self.scores = [score for _, score in vocab]
        self.unk_score = min(self.scores) - 10.0
        self.max_piece = max(len(piece) for piece, _ in vocab)

    def pieces_of(self, normalized):
        """Unigram ids of one normalized, non-empty section."""
        text = "\u2581" + normalized.replace(" ", "\u2581")
        n = len(text)
        # Nodes are [id, length, score, backtrace score, previous node]; begin[p] / end[p]: nodes starting / ending
        # at p, in insertion order (which decides ties, as in the library).
        bos = [CLS_ID, 0, 0.0, 0.0, None]
        begin = [[] for _ in range(n + 1)]
        end = [[] for _ in range(n + 1)]
        end[0].append(bos)
        begin[n].append([SEP_ID, 0, 0.0, 0.0, None])
        for pos in range(n):
            single = False
            for length in range(1, min(self.max_piece, n - pos) + 1):
                i = self.ids.get(text[pos: pos + length])
                if i is None:
                    continue
                node = [i, length, self.scores[i], 0.0, None]
                begin[pos].append(node)
                end[pos + length].append(node)
                single = single or length == 1
            if not single:
                node = [UNK_ID, 1, self.unk_score, 0.0, None]
                begin[pos].append(node)
                end[pos + 1].append(node)
        for pos in range(n + 1):
            for rnode in begin[pos]:
                best, best_score = None, 0.0
                for lnode in end[pos]:
                    score = lnode[3] + rnode[2]
                    if best is None or score > best_score:
                        best, best_score = lnode, score
                rnode[4], rnode[3] = best, best_score
        path = []
        node = begin[n][0][4]
        while node[4] is not None:
            path.append(node[0])
            node = node[4]
        path.reverse()
        out = []
        for i in path:  # fuse_unk: a run of unknown characters is one [UNK]
            if not (i == UNK_ID and out and out[-1] == UNK_ID):
                out.append(i)
        return out

    def encode(self, text):
        """Ids with [CLS] and [SEP], not truncated."""
        ids = [CLS_ID]
        for section in _SPECIAL_SPLIT.split(text):
            if section in SPECIALS:
                ids.append(SPECIALS.index(section))
                continue
            normalized = normalize(section)
            if normalized:
                ids += self.pieces_of(normalized)
        return ids + [SEP_ID]

    def encode_for_model(self, text):
        """encode() truncated to MAX_LENGTH: [CLS], the first MAX_LENGTH − 2 pieces, [SEP]."""
        ids = self.encode(text)
        if len(ids) > MAX_LENGTH:
            ids = ids[: MAX_LENGTH - 1] + [SEP_ID]
        return ids

    def to_hf_json(self):
        """tokenizer.json in the Hugging Face `tokenizers` format."""
        vocab = [[piece, score] for piece, score in self.vocab]
        special = {s: {"id": s, "ids": [SPECIALS.index(s)], "tokens": [s]} for s in ("[CLS]", "[SEP]")}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
                for i, s in enumerate(SPECIALS)
            ],
            "normalizer": {
                "type": "Sequence",
                "normalizers": [
                    {"type": "NFKC"},
                    {"type": "Replace", "pattern": {"Regex": "[" + WHITESPACE + "]+"}, "content": " "},
                    {"type": "Strip", "strip_left": True, "strip_right": True},
                ],
            },
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                              "split": True},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                         {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                "special_tokens": special,
            },
            "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
            "model": {"type": "Unigram", "unk_id": UNK_ID, "vocab": vocab, "byte_fallback": False},
        }


def sentencepiece_differences(model_bytes, encoded):
    """How many texts SentencePiece's own encoder segments differently from this module's encode() (ties; see
    Tokenizer). `encoded`: text -> encode(text); texts holding a special token's string are skipped."""
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    compared = differ = 0
    for text, ids in encoded.items():
        if _SPECIAL_SPLIT.search(text):
            continue
        normalized = normalize(text)
        compared += 1
        if (sp.encode(normalized, out_type=int) if normalized else []) != ids[1:-1]:
            differ += 1
    return {"texts": compared, "differ": differ}


def tokenizer_config():
    """tokenizer_config.json: the library's Tokenizer takes it as its second argument."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MAX_LENGTH,
        "padding_side": "right",
        "truncation_side": "right",
        "pad_token": SPECIALS[PAD_ID],
        "unk_token": SPECIALS[UNK_ID],
        "cls_token": SPECIALS[CLS_ID],
        "sep_token": SPECIALS[SEP_ID],
        "mask_token": SPECIALS[MASK_ID],
        "clean_up_tokenization_spaces": False,
    }


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
