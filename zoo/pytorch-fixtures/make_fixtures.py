#!/usr/bin/python3
"""Real `torch.onnx.export` fixtures for the builder (issue #13): small transformers, each as a base and three
experts (base + random low-rank deltas on every matrix, small deltas on every vector), plus reference outputs
computed in PyTorch for a few fixed inputs.

One-off generator: its outputs under test/fixtures/pytorch/ are committed; nothing in tests or CI runs Python.
Run from the repository root with Debian's interpreter (torch 1.13 CPU, onnx 1.12):

    /usr/bin/python3 zoo/pytorch-fixtures/make_fixtures.py && npx biome check --write test/fixtures/pytorch

(biome then formats the reference JSON as the repository's formatter wants it.)

Deterministic: fixed seeds, and the exporter is deterministic for one module class, so a rerun rewrites the same
bytes (checked by running it twice and comparing sha256 sums).
"""
import copy
import json
import os
import shutil
import sys

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import helper
from onnx.external_data_helper import convert_model_to_external_data

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "text", "tooling"))
from text_model import EncoderClassifier  # noqa: E402

OUT = os.path.join("test", "fixtures", "pytorch")
DEFAULT_OPSET = torch.onnx._constants.ONNX_DEFAULT_OPSET  # 14 in torch 1.13
EXPERTS = ["expert-1", "expert-2", "expert-3"]
DELTA_RANK = 4


# ---------------------------------------------------------------------------------------------------------------
# Models


class DecoderBlock(nn.Module):
    """Pre-LN block with nn.MultiheadAttention(batch_first=True): the issue's repro. The exporter runs the attention
    on [seq, batch, d] inside (it transposes in and out), which is what the builder must track."""

    def __init__(self, d, heads, ffn):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.att = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)

    def forward(self, x, causal):
        h = self.ln1(x)
        a, _ = self.att(h, h, h, attn_mask=causal, need_weights=False)
        x = x + a
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Decoder(nn.Module):
    """input_ids int64 [batch, seq] -> logits float32 [batch, seq, vocab] (full-sequence next-token logits)."""

    def __init__(self, vocab=48, d=32, heads=4, ffn=64, layers=2, max_len=16):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList([DecoderBlock(d, heads, ffn) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, input_ids):
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device)
        x = self.tok(input_ids) + self.pos(positions)
        # [seq, seq] additive causal mask, built from the dynamic sequence length (exports as Trilu).
        causal = torch.triu(torch.full((seq, seq), float("-inf")), diagonal=1)
        for block in self.blocks:
            x = block(x, causal)
        return self.head(self.ln_f(x))


class TiedLM(nn.Module):
    """Tied weights: the token embedding is also the LM head. The head scores the last position only, so it is
    nn.functional.linear on a 2-D input and exports as Gemm(transB=1) reading `tok.weight` itself: one initializer
    feeding Gather and Gemm. (A head on the 3-D sequence would export as MatMul on a constant-folded transposed
    COPY of the embedding, `onnx::MatMul_N`: torch 1.13 unties it.)
    input_ids int64 [batch, seq] -> logits float32 [batch, vocab] (next-token logits)."""

    def __init__(self, vocab=48, d=32, heads=4, ffn=64, max_len=16):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.block = DecoderBlock(d, heads, ffn)
        self.ln_f = nn.LayerNorm(d)
        self.head_bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, input_ids):
        seq = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos(torch.arange(seq, device=input_ids.device))
        causal = torch.triu(torch.full((seq, seq), float("-inf")), diagonal=1)
        h = self.ln_f(self.block(x, causal))[:, -1]  # [batch, d]
        return F.linear(h, self.tok.weight, self.head_bias)  # [batch, vocab]


def Encoder():
    """The text zoo's encoder classifier (zoo/text/tooling/text_model.py, PyTorch's default init), small: explicit
    BERT-style attention (Q/K/V nn.Linear on 3-D input, i.e. MatMul with transposed initializers; heads split by
    Reshape/Transpose to [batch, heads, seq, head_dim], batch leading), post-LN blocks, mean-pool over the tokens
    whose mask is 1, and an nn.Linear on the 2-D pooled vector (exports as Gemm with transB=1).
    input_ids, attention_mask int64 [batch, seq] -> logits float32 [batch, 4]."""
    return EncoderClassifier(vocab=48, d=32, heads=4, ffn=64, layers=2, max_len=16, classes=4)


# ---------------------------------------------------------------------------------------------------------------
# Experts: base + random low-rank deltas


def make_expert(base, seed):
    """A copy of `base` with Δ = A·B (rank 4, entries scaled so ‖Δ‖ is about a quarter of ‖W‖) on every matrix,
    including the embeddings, and small dense deltas on every vector (LayerNorm γ/β, biases)."""
    g = torch.Generator().manual_seed(seed)
    expert = copy.deepcopy(base)
    with torch.no_grad():
        for _, p in expert.named_parameters():
            if p.dim() == 2:
                rows, cols = p.shape
                a = torch.randn(rows, DELTA_RANK, generator=g)
                b = torch.randn(DELTA_RANK, cols, generator=g)
                delta = a @ b
                p += delta * (0.25 * p.norm() / delta.norm())
            else:
                p += 0.05 * torch.randn(p.shape, generator=g)
    return expert.eval()


# ---------------------------------------------------------------------------------------------------------------
# Export and references


def export(model, example, path, input_names, output_name, opset, axes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dynamic = {name: {0: "batch", 1: "seq"} for name in input_names}
    dynamic[output_name] = axes
    torch.onnx.export(
        model,
        example,
        path,
        input_names=input_names,
        output_names=[output_name],
        dynamic_axes=dynamic,
        opset_version=opset,
    )
    onnx.checker.check_model(onnx.load(path))


def graph_signature(path):
    """Node ops with their inputs/outputs, and initializer names and shapes: equal for every model of one set."""
    g = onnx.load(path, load_external_data=False).graph
    nodes = [(n.op_type, tuple(n.input), tuple(n.output)) for n in g.node]
    return nodes, [(i.name, tuple(i.dims)) for i in g.initializer]


def check_same_graph(folder, names):
    first = graph_signature(f"{folder}/{names[0]}.onnx")
    for name in names[1:]:
        if graph_signature(f"{folder}/{name}.onnx") != first:
            raise SystemExit(f"{folder}/{name}.onnx does not have the graph of {folder}/{names[0]}.onnx")


def tensor_json(t):
    t = t.detach()
    if t.dtype == torch.int64:
        data = [int(v) for v in t.flatten().tolist()]
    else:
        data = [float("%.8g" % v) for v in t.to(torch.float32).flatten().tolist()]
    return {"dims": list(t.shape), "data": data}


def write_reference(path, models, cases, output_name, what):
    """reference.json: for each case, the inputs and every model's output computed in PyTorch (float32)."""
    out = {"what": what, "output": output_name, "cases": []}
    for name, inputs in cases:
        entry = {"name": name, "inputs": {k: tensor_json(v) for k, v in inputs.items()}, "outputs": {}}
        with torch.no_grad():
            for model_name, model in models.items():
                entry["outputs"][model_name] = tensor_json(model(*inputs.values()))
        out["cases"].append(entry)
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


def lift_to_constants(src, dst):
    """Moves every initializer into a `Constant` node (same output name) at the head of the graph: the layout of
    older exporters and paddle2onnx, where weights are not initializers."""
    model = onnx.load(src)
    graph = model.graph
    constants = [
        helper.make_node("Constant", [], [init.name], name=f"Constant_{init.name}", value=init)
        for init in graph.initializer
    ]
    names = {init.name for init in graph.initializer}
    kept_inputs = [i for i in graph.input if i.name not in names]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    del graph.initializer[:]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(constants + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def to_external_data(src, dst_dir, name):
    """Same model, tensors of 1 KiB or more in one data file beside it (onnx.save's external data layout)."""
    model = onnx.load(src)
    os.makedirs(dst_dir, exist_ok=True)
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=f"{name}.onnx.data")
    onnx.save(model, os.path.join(dst_dir, f"{name}.onnx"))
    onnx.checker.check_model(os.path.join(dst_dir, f"{name}.onnx"))


def models_of(cls, seed):
    torch.manual_seed(seed)
    base = cls().eval()  # a module class or a factory
    # A pretrained base has no two equal vectors. A fresh one does (every LayerNorm starts at γ=1, β=0), and the
    # exporter then deduplicates those initializers behind Identity nodes, so base and experts would export to
    # different graphs. Give the base's vectors the spread training would.
    with torch.no_grad():
        for p in base.parameters():
            if p.dim() == 1:
                p += 0.1 * torch.randn(p.shape)
    return {"base": base, **{e: make_expert(base, seed * 100 + i + 1) for i, e in enumerate(EXPERTS)}}


def ids(g, batch, seq, vocab=48):
    return torch.randint(0, vocab, (batch, seq), generator=g)


def main():
    # The sets are rewritten from scratch; README.md (hand-written) stays.
    for folder in ["decoder", "encoder", "constant-weights", "external-data", "tied"]:
        shutil.rmtree(os.path.join(OUT, folder), ignore_errors=True)
    g = torch.Generator().manual_seed(2026)

    # 1. decoder: nn.MultiheadAttention + causal mask, opset 17.
    dec = models_of(Decoder, 1)
    dec_cases = [("batch2-seq5", {"input_ids": ids(g, 2, 5)}), ("batch1-seq9", {"input_ids": ids(g, 1, 9)})]
    for name, model in dec.items():
        export(model, (dec_cases[0][1]["input_ids"],), f"{OUT}/decoder/{name}.onnx", ["input_ids"], "logits", 17,
               {0: "batch", 1: "seq"})
    write_reference(f"{OUT}/decoder/reference.json", dec, dec_cases, "logits",
                    "Decoder (nn.MultiheadAttention, causal), logits [batch, seq, vocab]")

    # 2. encoder: explicit attention, default opset, and the same models at opsets 11 and 9.
    enc = models_of(Encoder, 2)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0  # second row padded after 4 tokens
    enc_cases = [
        ("batch2-seq6-padded", {"input_ids": ids(g, 2, 6), "attention_mask": mask}),
        ("batch3-seq4", {"input_ids": ids(g, 3, 4), "attention_mask": torch.ones(3, 4, dtype=torch.long)}),
        ("batch1-seq12", {"input_ids": ids(g, 1, 12), "attention_mask": torch.ones(1, 12, dtype=torch.long)}),
    ]
    example = tuple(enc_cases[0][1].values())
    for opset, sub in [(DEFAULT_OPSET, "encoder"), (11, "encoder/opset11"), (9, "encoder/opset9")]:
        for name, model in enc.items():
            export(model, example, f"{OUT}/{sub}/{name}.onnx", ["input_ids", "attention_mask"], "logits", opset,
                   {0: "batch"})
    write_reference(f"{OUT}/encoder/reference.json", enc, enc_cases, "logits",
                    "Encoder classifier (explicit attention, mean-pool, Gemm head), logits [batch, 4]; "
                    "the same for every opset")

    # 3. constant-weights: the default-opset encoder with every initializer moved into a Constant node.
    for name in enc:
        os.makedirs(f"{OUT}/constant-weights", exist_ok=True)
        lift_to_constants(f"{OUT}/encoder/{name}.onnx", f"{OUT}/constant-weights/{name}.onnx")

    # 4a. tied: one initializer (tok.weight) feeding Gather and the Gemm(transB=1) LM head.
    tied = models_of(TiedLM, 3)
    tied_cases = [("batch2-seq5", {"input_ids": ids(g, 2, 5)}), ("batch3-seq7", {"input_ids": ids(g, 3, 7)})]
    for name, model in tied.items():
        export(model, (tied_cases[0][1]["input_ids"],), f"{OUT}/tied/{name}.onnx", ["input_ids"], "logits",
               DEFAULT_OPSET, {0: "batch"})
    write_reference(f"{OUT}/tied/reference.json", tied, tied_cases, "logits",
                    "Tied-embedding LM, next-token logits [batch, vocab]")

    # 4b. external-data: the default-opset encoder base with its tensors in base.onnx.data.
    to_external_data(f"{OUT}/encoder/base.onnx", f"{OUT}/external-data", "base")

    names = ["base", *EXPERTS]
    for folder in ["decoder", "encoder", "encoder/opset11", "encoder/opset9", "constant-weights", "tied"]:
        check_same_graph(f"{OUT}/{folder}", names)
    print(f"torch {torch.__version__}, onnx {onnx.__version__}: fixtures written to {OUT}")


if __name__ == "__main__":
    main()
