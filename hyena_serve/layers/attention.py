"""Multi-head self-attention token mixer over all H·W positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Vanilla self-attention; ``dim // head_dim`` heads (at least one). Input (B, H, W, C)."""

    def __init__(self, dim: int, head_dim: int = 32, num_heads: int | None = None, qkv_bias: bool = False,
                 proj_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0, **kwargs):
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = num_heads or max(dim // head_dim, 1)
        self.attention_dim = self.num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * self.attention_dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(self.attention_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, h, w, self.attention_dim)
        return self.proj_drop(self.proj(y))
