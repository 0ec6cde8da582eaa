#!/usr/bin/python3
"""The PyTorch side of the user guide's "Bring your PyTorch models" walkthrough (docs/user-guide.md, issue #13):
a small encoder built from nn.MultiheadAttention(batch_first=True) + nn.Linear, pretrained briefly on two toy
sequence tasks, then fine-tuned into one expert per task, each exported with torch.onnx.export.

One-off: its outputs beside this file (base.onnx, experts/*.onnx, routing.jsonl, request.json) are committed;
nothing in tests or CI runs Python. Deterministic: a second run rewrote every file byte for byte. Run from the
repository root with Debian's interpreter (python3-torch 1.13, python3-onnx), then let biome format the JSON:

    /usr/bin/python3 docs/examples/pytorch/make_models.py && npx biome check --write docs/examples/pytorch

The two tasks read sequences of 8 token ids from disjoint halves of a 32-token vocabulary, so a router can tell
them apart from the input alone:
  - `majority` (tokens 0-15):  which quarter of 0..15 (0-3, 4-7, 8-11, 12-15) holds most of the tokens (ties: the
                               lower quarter)
  - `last`     (tokens 16-31): which quarter of 16..31 the last token is in
Both answer one of 4 classes, and the base (a little of both) is poor at each, so the experts differ.
"""
import copy
import json
import os

import onnx
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB, SEQ, MAX_LEN, D, HEADS, FFN, CLASSES = 32, 8, 16, 32, 4, 64, 4
TASKS = ["majority", "last"]


class Encoder(nn.Module):
    """input_ids int64 [batch, seq ≤ 16] -> logits float32 [batch, 4]: embeddings, one post-LN attention block, mean pool,
    a linear classifier."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        # Learned positions as an nn.Embedding indexed from the input's length (forward): the graph then has a Gather
        # on pos.weight, which carries per-expert knowledge. A constant index (torch.arange(SEQ)) or an nn.Parameter
        # added to x is folded by the exporter into a constant [8, 32] added to x, which the builder can only merge
        # (the build report lists it as "shared only"; see the guide).
        self.pos = nn.Embedding(MAX_LEN, D)
        self.att = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.ln1 = nn.LayerNorm(D)
        self.ff = nn.Sequential(nn.Linear(D, FFN), nn.GELU(), nn.Linear(FFN, D))
        self.ln2 = nn.LayerNorm(D)
        self.cls = nn.Linear(D, CLASSES)

    def forward(self, input_ids):
        x = self.tok(input_ids) + self.pos(torch.arange(input_ids.shape[1]))
        a, _ = self.att(x, x, x, need_weights=False)
        x = self.ln1(x + a)
        x = self.ln2(x + self.ff(x))
        return self.cls(x.mean(dim=1))


def task_batch(task, n, gen):
    """n examples of `task`: token ids [n, 8] and labels [n]."""
    if task == "majority":
        ids = torch.randint(0, 16, (n, SEQ), generator=gen)
        labels = torch.nn.functional.one_hot(ids // 4, 4).sum(dim=1).argmax(dim=1)
    else:
        ids = torch.randint(16, 32, (n, SEQ), generator=gen)
        labels = (ids[:, -1] - 16) // 4
    return ids, labels


def train(model, tasks, steps, gen, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(steps):
        batches = [task_batch(t, 64, gen) for t in tasks]
        ids = torch.cat([b[0] for b in batches])
        labels = torch.cat([b[1] for b in batches])
        opt.zero_grad()
        loss_fn(model(ids), labels).backward()
        opt.step()
    model.eval()


def accuracy(model, task, gen):
    ids, labels = task_batch(task, 1000, gen)
    with torch.no_grad():
        logits = model(ids)
    return (logits.argmax(dim=1) == labels).float().mean().item()


def export(model, path):
    torch.onnx.export(
        model,
        torch.zeros(2, SEQ, dtype=torch.int64),
        path,
        input_names=["input_ids"],
        output_names=["logits"],
        # Batch (and sequence length) dynamic: the runner batches requests along axis 0.
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}},
    )
    onnx.checker.check_model(onnx.load(path))


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    base = Encoder()
    train(base, TASKS, 40, gen)  # "pretraining": a little of both tasks
    os.makedirs(os.path.join(HERE, "experts"), exist_ok=True)
    export(base, os.path.join(HERE, "base.onnx"))
    table = {t: {"base": accuracy(base, t, gen)} for t in TASKS}
    for task in TASKS:
        expert = copy.deepcopy(base)
        train(expert, [task], 300, gen, lr=2e-3)  # fine-tuning: every weight, one task
        export(expert, os.path.join(HERE, "experts", f"{task}.onnx"))
        for t in TASKS:
            table[t][task] = accuracy(expert, t, gen)
    # Routing data for the builder's router: 64 labelled inputs per expert, one JSON object a line.
    with open(os.path.join(HERE, "routing.jsonl"), "w") as f:
        for task in TASKS:
            ids, _ = task_batch(task, 64, gen)
            for row in ids.tolist():
                f.write(json.dumps({"expert": task, "inputs": {"input_ids": row}}) + "\n")
    # The guide's request: one row of each task.
    rows = [task_batch(t, 1, gen)[0][0].tolist() for t in TASKS]
    request = {
        "inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [2, SEQ], "data": sum(rows, [])}]
    }
    with open(os.path.join(HERE, "request.json"), "w") as f:
        json.dump(request, f)
    print("accuracy (rows: task, columns: model)")
    for t in TASKS:
        print(t, {k: round(v, 3) for k, v in table[t].items()})


if __name__ == "__main__":
    main()
