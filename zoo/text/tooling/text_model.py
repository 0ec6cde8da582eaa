"""The text zoo's model: a small BERT-style transformer encoder classifier, written as users write one in PyTorch
(explicit attention as in Hugging Face's BERT: Q/K/V nn.Linear, heads split by view/transpose to
[batch, heads, seq, head_dim]; post-LN blocks; learned positions).

    input_ids, attention_mask int64 [batch, seq]  ->  logits float32 [batch, K_MAX]

Pooling is the mean of the final hidden states over tokens whose mask is 1 ([CLS] and [SEP] included); one shared
classification head with K_MAX outputs serves every task (task t reads the first K_t logits), so that base and
experts export to the identical graph. The masked-LM head used in pretraining (tied to the token embedding, plus
`mlm_bias`) is not part of the exported model.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = {"vocab": 5000, "d": 64, "heads": 4, "ffn": 256, "layers": 3, "max_len": 64, "classes": 4}


def init_weights(module):
    """BERT's initialisation: N(0, 0.02) matrices and embeddings, zero biases. PyTorch's default N(0, 1) embedding
    makes the tied masked-LM head start with logits of std ≈ 8 and a loss far above ln(vocab)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class Block(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.ln2 = nn.LayerNorm(d)

    def split(self, t):
        b, s, d = t.shape
        return t.view(b, s, self.heads, d // self.heads).transpose(1, 2)  # [b, h, s, dh]

    def forward(self, x, bias):
        b, s, d = x.shape
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // self.heads) + bias  # [b, h, s, s]
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, s, d)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class EncoderClassifier(nn.Module):
    """Embeddings, post-LN blocks, mask-aware mean pooling and a linear head, with PyTorch's default
    initialisation. Also the architecture of the builder's encoder fixtures (zoo/pytorch-fixtures)."""

    def __init__(self, vocab, d, heads, ffn, layers, max_len, classes):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.ln_e = nn.LayerNorm(d)
        self.blocks = nn.ModuleList([Block(d, heads, ffn) for _ in range(layers)])
        self.cls = nn.Linear(d, classes)

    def hidden(self, input_ids, attention_mask):
        seq = input_ids.shape[1]
        x = self.ln_e(self.tok(input_ids) + self.pos(torch.arange(seq, device=input_ids.device)))
        m = attention_mask.to(torch.float32)
        bias = (1.0 - m)[:, None, None, :] * -10000.0  # [b, 1, 1, s]: no attention to padding
        for block in self.blocks:
            x = block(x, bias)
        return x  # [b, s, d]

    def forward(self, input_ids, attention_mask):
        x = self.hidden(input_ids, attention_mask)
        m = attention_mask.to(torch.float32)[:, :, None]
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)  # [b, d]
        return self.cls(pooled)  # [b, classes]


class TextEncoder(EncoderClassifier):
    """The zoo's model: BERT initialisation, and a masked-LM output bias for pretraining."""

    def __init__(self, vocab, d, heads, ffn, layers, max_len, classes):
        super().__init__(vocab, d, heads, ffn, layers, max_len, classes)
        # Masked-LM output bias (pretraining only; the MLM head's matrix is the token embedding).
        self.mlm_bias = nn.Parameter(torch.zeros(vocab))
        self.apply(init_weights)

    def mlm_logits(self, input_ids, attention_mask, selected):
        """Vocabulary logits at the selected (masked) positions only: [n selected, vocab]."""
        h = self.hidden(input_ids, attention_mask)[selected]  # [n, d]
        return F.linear(h, self.tok.weight, self.mlm_bias)


def export_onnx(model, path, opset):
    """torch.onnx.export with dynamic batch and sequence axes; weights as initializers. forward() does not read
    mlm_bias, so the exporter leaves it out."""
    example = (torch.tensor([[2, 100, 200, 3], [2, 300, 3, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    torch.onnx.export(
        model.eval(),
        example,
        path,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                      "logits": {0: "batch"}},
        opset_version=opset,
    )
