"""Pretraining, per-domain fine-tuning and perplexity for the LM zoo (CPU, torch 1.13)."""

import math
import random
import time

import torch
import torch.nn.functional as F

import model as M

BATCH_DOCS = 16


def render_chat(messages, generation_prompt):
    """The package's chat template (zoo.json chatTemplate), rendered the way the runner renders it."""
    text = "<|bos|>" + "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
    return text + ("<|assistant|>\n" if generation_prompt else "")


def training_ids(doc, tok, chat):
    """One training sequence: BOS text EOS, or (chat) the prompt as the user's turn and the rest as the reply."""
    if chat:
        rest = doc["text"][len(doc["prompt"]) :].lstrip()
        text = render_chat([{"role": "user", "content": doc["prompt"]}], True) + rest + "<|end|>"
        ids = tok.encode(text, add_bos=False)
    else:
        ids = tok.encode(doc["text"]) + [tok.eos_id]
    return ids[: M.CONFIG["max_context"]]


def eval_ids(doc, tok):
    """Perplexity text: BOS + text + EOS, cut to the context. Every id after BOS is predicted."""
    return (tok.encode(doc["text"]) + [tok.eos_id])[: M.CONFIG["max_context"]]


def batch_tensors(seqs, pad_id):
    """Right-padded batch: ids [B,S], mask [B,S], positions [B,S], targets [B,S]: the next id, -100 at the last
    position and wherever the next position is padding (so the logits need no slicing, whose backward pass
    zero-fills a [B,S,V] tensor)."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    targets = torch.full_like(ids, -100)
    targets[:, :-1] = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    positions = torch.arange(n).unsqueeze(0).expand(len(seqs), n)
    return ids, mask, positions, targets


def loss_of(model, seqs, pad_id, reduction="mean"):
    ids, mask, positions, targets = batch_tensors(seqs, pad_id)
    logits, _ = model(ids, mask, positions, model.empty_past(ids.shape[0]))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction=reduction)


def optimizer_for(model, lr, weight_decay):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def batches(pools, rng):
    """Endless batches of BATCH_DOCS sequences. Each sequence comes from a uniformly chosen pool (domain), then a
    uniformly chosen document. Four batches are drawn at once and grouped by length, which cuts padding (attention
    over 256 positions costs about 7x that over 128 here) without changing which documents are seen."""
    while True:
        draw = sorted((rng.choice(rng.choice(pools)) for _ in range(4 * BATCH_DOCS)), key=len)
        group = [draw[i : i + BATCH_DOCS] for i in range(0, len(draw), BATCH_DOCS)]
        rng.shuffle(group)
        yield from group


def run_training(model, pools, steps, lr, warmup, seed, pad_id, log, label):
    """AdamW (weight decay on matrices), linear warm-up then cosine decay to 10 %, gradient norm clipped at 1.
    Returns (wall seconds, CPU seconds of this process): the cores are shared, so wall time depends on the load."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = optimizer_for(model, lr, 0.1)
    model.train()
    start, cpu_start = time.time(), time.process_time()
    stream = batches(pools, rng)
    for step in range(steps):
        scale = (step + 1) / warmup if step < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        loss = loss_of(model, next(stream), pad_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"{label} step {step + 1}/{steps} loss {loss.item():.3f} {time.time() - start:.0f}s")
    model.eval()
    return time.time() - start, time.process_time() - cpu_start


@torch.no_grad()
def perplexity(model, seqs, pad_id):
    """Token-level perplexity: exp(total NLL / number of predicted tokens) over all sequences."""
    nll, count = 0.0, 0
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for i in range(0, len(order), 32):
        batch = [seqs[j] for j in order[i : i + 32]]
        nll += loss_of(model, batch, pad_id, reduction="sum").item()
        count += sum(len(s) - 1 for s in batch)
    return math.exp(nll / count), count


@torch.no_grad()
def sequence_nll(model, seq, pad_id):
    return loss_of(model, [seq], pad_id, reduction="sum").item()
