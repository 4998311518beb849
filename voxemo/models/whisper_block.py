"""Whisper's pre-LN Transformer block, shared by the Whisper encoder (`voxemo.encoders.whisper`) and the
encoder heads that fine-tune copies of its top blocks (`encoder_heads.EncoderAttentive`).

Written from openai/whisper `whisper/model.py` (ResidualAttentionBlock, encoder side: no cross-attention).

Letters: B batch, S frames, D width, H heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-5  # torch's default, as Whisper


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)  # q, k, v fused as in CTranslate2 (k's bias is 0)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        B, S, D = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, S, D/H)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)  # (B, H, S, D/H), scaled by 1/sqrt(D/H)
        return self.out(y.transpose(1, 2).reshape(B, S, D))


class Block(nn.Module):
    """Pre-LN residual block: x + attn(LN(x)), then x + MLP(LN(x)) with a GELU. `key_mask` (B, 1, 1, S)
    bool, True where a key may be attended to (None: every frame)."""

    def __init__(self, width: int, heads: int, ffn: int):
        super().__init__()
        self.attn_ln = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = SelfAttention(width, heads)
        self.mlp_ln = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(width, ffn)
        self.fc2 = nn.Linear(ffn, width)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), key_mask)
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))
