"""A small GPT-style decoder whose forward pass is the Hugging Face ONNX decoder layout with past key/values.

forward(input_ids [B,S], attention_mask [B,P+S], position_ids [B,S], past [(k, v) [B,H,P,hd]] * L)
  -> logits [B,S,V], presents [(k, v) [B,H,P+S,hd]] * L

The same module trains (P = 0, right padding) and exports, so the exported graph is the trained computation.
The input embedding is tied to the LM head: the head is F.linear on a 2-D view with a bias, which the exporter
emits as Gemm(transB=1) on the embedding initializer itself, so one initializer feeds a Gather and a Gemm.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = {
    "vocab_size": 2048,
    "d_model": 128,
    "n_layer": 3,
    "n_head": 4,
    "d_ff": 384,
    "max_context": 256,
}

# Added to the scores of masked keys. Finite, so a query row with every key masked (a left-padding position)
# softmaxes to a uniform row instead of NaN; such rows only feed padding positions, which nobody reads.
MASKED_SCORE = -1e9


class Attention(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head, self.head_dim = n_head, d // n_head
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d)

    def heads(self, t, b, s):
        return t.reshape(b, s, self.n_head, self.head_dim).transpose(1, 2)  # [B,H,S,hd]

    def forward(self, x, score_bias, past_k, past_v):
        b, s = x.shape[0], x.shape[1]
        # Scaling q rather than the scores touches [B,H,S,hd] instead of [B,H,S,P+S] (memory-bound on CPU).
        q = self.heads(self.q_proj(x), b, s) * (1.0 / math.sqrt(self.head_dim))
        k = torch.cat([past_k, self.heads(self.k_proj(x), b, s)], dim=2)  # [B,H,P+S,hd]
        v = torch.cat([past_v, self.heads(self.v_proj(x), b, s)], dim=2)
        scores = torch.matmul(q, k.transpose(2, 3)) + score_bias  # [B,H,S,P+S]
        y = torch.matmul(torch.softmax(scores, dim=-1), v)  # [B,H,S,hd]
        y = y.transpose(1, 2).reshape(b, s, self.n_head * self.head_dim)
        return self.o_proj(y), k, v


class Block(nn.Module):
    def __init__(self, d, n_head, d_ff):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = Attention(d, n_head)
        self.ln_2 = nn.LayerNorm(d)
        self.fc_in = nn.Linear(d, d_ff)
        self.fc_out = nn.Linear(d_ff, d)

    def forward(self, x, score_bias, past_k, past_v):
        a, k, v = self.attn(self.ln_1(x), score_bias, past_k, past_v)
        x = x + a
        x = x + self.fc_out(F.gelu(self.fc_in(self.ln_2(x))))
        return x, k, v


class TinyGPT(nn.Module):
    def __init__(self, vocab_size, d_model, n_layer, n_head, d_ff, max_context):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(max_context, d_model)
        self.blocks = nn.ModuleList([Block(d_model, n_head, d_ff) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head_bias = nn.Parameter(torch.zeros(vocab_size))
        self.n_layer, self.n_head, self.head_dim = n_layer, n_head, d_model // n_head
        self.vocab_size = vocab_size
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def empty_past(self, batch):
        z = torch.zeros(batch, self.n_head, 0, self.head_dim)
        return [(z, z) for _ in range(self.n_layer)]

    def forward(self, input_ids, attention_mask, position_ids, past):
        b, s = input_ids.shape[0], input_ids.shape[1]
        total = attention_mask.shape[1]
        # Query i sits at cache index total - s + i and sees keys at indices <= that which the mask keeps.
        key_index = torch.arange(total)  # [T]
        query_index = torch.arange(s) + (total - s)  # [S]
        causal = key_index.unsqueeze(0) <= query_index.unsqueeze(1)  # [S,T]
        allowed = causal.unsqueeze(0).unsqueeze(0) & (attention_mask > 0).unsqueeze(1).unsqueeze(2)  # [B,1,S,T]
        score_bias = torch.where(allowed, torch.zeros(()), torch.full((), MASKED_SCORE))
        x = self.wte(input_ids) + self.wpe(position_ids)
        presents = []
        for block, (pk, pv) in zip(self.blocks, past):
            x, k, v = block(x, score_bias, pk, pv)
            presents.append((k, v))
        h = self.ln_f(x).reshape(b * s, -1)  # [B*S,D]
        logits = F.linear(h, self.wte.weight, self.lm_head_bias).reshape(b, s, self.vocab_size)  # [B,S,V]
        return logits, presents


def build():
    return TinyGPT(**CONFIG)


def positions_from_mask(attention_mask, seq_len):
    """HF convention: position = number of kept tokens before it (left padding shifts nothing); pads get 0."""
    pos = torch.cumsum(attention_mask, dim=1) - 1
    pos = pos.clamp(min=0)
    return pos[:, -seq_len:]
