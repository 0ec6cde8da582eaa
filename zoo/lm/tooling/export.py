"""torch.onnx.export in the Hugging Face decoder layout with past key/values, plus the torch-side references
(greedy continuations, logits, left-padded batches) that the committed fixtures record."""

import torch

import model as M

OPSET = 17


class ExportGPT(M.TinyGPT):
    """TinyGPT with flat past inputs and flat present outputs, as ONNX inputs and outputs are flat."""

    def forward(self, input_ids, attention_mask, position_ids, *flat_past):
        past = [(flat_past[2 * i], flat_past[2 * i + 1]) for i in range(len(flat_past) // 2)]
        logits, presents = super().forward(input_ids, attention_mask, position_ids, past)
        return (logits, *[t for kv in presents for t in kv])


def io_names(n_layer):
    inputs = ["input_ids", "attention_mask", "position_ids"]
    inputs += [f"past_key_values.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]
    outputs = ["logits"] + [f"present.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]
    return inputs, outputs


def dynamic_axes(n_layer):
    inputs, outputs = io_names(n_layer)
    axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    for name in inputs[3:]:
        axes[name] = {0: "batch_size", 2: "past_sequence_length"}
    for name in outputs[1:]:
        axes[name] = {0: "batch_size", 2: "total_sequence_length"}
    return axes


def export(state_dict, path):
    cfg = M.CONFIG
    net = ExportGPT(**cfg).eval()
    net.load_state_dict(state_dict)
    n_layer, n_head, head_dim = cfg["n_layer"], cfg["n_head"], cfg["d_model"] // cfg["n_head"]
    # Example shapes only fix the trace; every axis named in dynamic_axes stays symbolic (past 2, new 3 tokens).
    b, s, p = 2, 3, 2
    ids = torch.randint(0, cfg["vocab_size"], (b, s))
    mask = torch.ones(b, p + s, dtype=torch.long)
    pos = M.positions_from_mask(mask, s)
    past = [torch.zeros(b, n_head, p, head_dim) for _ in range(2 * n_layer)]
    inputs, outputs = io_names(n_layer)
    torch.onnx.export(
        net,
        (ids, mask, pos, *past),
        path,
        input_names=inputs,
        output_names=outputs,
        dynamic_axes=dynamic_axes(n_layer),
        opset_version=OPSET,
        do_constant_folding=True,
    )


@torch.no_grad()
def step(model, ids, mask, positions, past):
    logits, presents = model(ids, mask, positions, past)
    return logits, presents


@torch.no_grad()
def greedy(model, prompt_ids, n_tokens):
    """Prefill the prompt, then n_tokens decode steps through the KV cache. Returns the new ids, the prefill's
    last-position logits [V] and each step's top-1/top-2 logit margin (how far greedy is from a tie)."""
    ids = torch.tensor([prompt_ids])
    mask = torch.ones_like(ids)
    logits, past = step(model, ids, mask, torch.arange(ids.shape[1]).unsqueeze(0), model.empty_past(1))
    first_logits = logits[0, -1].clone()
    out, margins = [], []
    for _ in range(n_tokens):
        last = logits[0, -1]
        top2 = torch.topk(last, 2).values
        margins.append((top2[0] - top2[1]).item())
        nxt = int(torch.argmax(last))
        out.append(nxt)
        mask = torch.cat([mask, torch.ones(1, 1, dtype=torch.long)], dim=1)
        logits, past = step(model, torch.tensor([[nxt]]), mask, torch.tensor([[mask.shape[1] - 1]]), past)
    return out, first_logits, margins


@torch.no_grad()
def greedy_left_padded(model, prompts, n_tokens, pad_id):
    """The same greedy loop for a batch, left-padded to the longest prompt; positions follow the mask."""
    n = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (n - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts])
    logits, past = step(model, ids, mask, M.positions_from_mask(mask, n), model.empty_past(len(prompts)))
    out = [[] for _ in prompts]
    for _ in range(n_tokens):
        nxt = torch.argmax(logits[:, -1], dim=-1)  # [B]
        for i, t in enumerate(nxt.tolist()):
            out[i].append(t)
        mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=torch.long)], dim=1)
        logits, past = step(model, nxt.unsqueeze(1), mask, M.positions_from_mask(mask, 1), past)
    return out
