"""Local self-attention token mixer (SASA).

Ramachandran et al., "Stand-Alone Self-Attention in Vision Models" (NeurIPS 2019): every
pixel attends to the k×k neighbourhood centred on it, with multi-head queries, keys and
values from 1×1 projections and a relative position embedding split between the row
offset and the column offset (each half of a head's channels):

    y_ij = Σ_{(a,b) ∈ N_k(i,j)} softmax_ab(q_ij·k_ab + q_ij·r_{a-i, b-j}) v_ab

Departures from the paper, each to fit the MetaFormer mixer contract or to serve well:
- neighbours outside the feature map are masked out of the softmax (the paper pads them
  with zeros, which still take attention weight); border pixels attend to the neighbours
  they have;
- queries are scaled by ``head_dim ** -0.5``, as in standard attention;
- an output projection (C → C), as every MetaFormer mixer has;
- the neighbourhoods are gathered with ``unfold`` (im2col) of the keys and values, which
  exports to standard ONNX ops (k² shifted slices would export too, but make the graph
  and the export ~9× slower).

:func:`local_attention_reference` is the plain loop over every pixel and its neighbours
that the vectorised forward is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LocalSelfAttention(nn.Module):
    """k×k local multi-head self-attention with relative row/column embeddings.
    Input and output (B, H, W, C); ``dim // head_dim`` heads (at least one)."""

    def __init__(self, dim: int, kernel_size: int = 7, head_dim: int = 32, qkv_bias: bool = False,
                 proj_bias: bool = False, **kwargs):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.kernel_size = kernel_size
        self.num_heads = max(dim // head_dim, 1)
        self.head_dim = dim // self.num_heads
        if self.head_dim * self.num_heads != dim or self.head_dim % 2:
            raise ValueError(f"dim {dim} must split into {self.num_heads} heads of an even size")
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        half = self.head_dim // 2
        # Relative embeddings of the row offset (first half of a head's channels) and the
        # column offset (second half), offsets -k//2 .. k//2.
        self.rel_rows = nn.Parameter(torch.empty(kernel_size, half))
        self.rel_cols = nn.Parameter(torch.empty(kernel_size, self.head_dim - half))
        nn.init.trunc_normal_(self.rel_rows, std=0.02)
        nn.init.trunc_normal_(self.rel_cols, std=0.02)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def relative_embeddings(self) -> torch.Tensor:
        """(k², head_dim): the embedding of every neighbour offset, row-major (dy, dx)."""
        k = self.kernel_size
        rows = self.rel_rows[:, None, :].expand(k, k, -1)
        cols = self.rel_cols[None, :, :].expand(k, k, -1)
        return torch.cat([rows, cols], dim=-1).reshape(k * k, self.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        k, r = self.kernel_size, self.kernel_size // 2
        n, d = b * self.num_heads, self.head_dim
        q, key, v = self.qkv(x).reshape(b, h, w, 3, self.num_heads, d).permute(3, 0, 4, 5, 1, 2).unbind(0)
        q = (q * d ** -0.5).reshape(n, d, h * w)
        # Every pixel's k×k neighbourhood of keys and values (zero-padded; masked below).
        keys = F.unfold(key.reshape(n, d, h, w), k, padding=r).reshape(n, d, k * k, h * w)
        values = F.unfold(v.reshape(n, d, h, w), k, padding=r).reshape(n, d, k * k, h * w)
        inside = F.unfold(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), k, padding=r)  # (1, k², HW)
        logits = (keys * q[:, :, None]).sum(1) + self.relative_embeddings() @ q  # (n, k², HW): q·key + q·r
        attn = logits.masked_fill(inside == 0, float("-inf")).softmax(dim=1)
        y = (values * attn[:, None]).sum(2)  # (n, d, HW)
        return self.proj(y.reshape(b, c, h, w).permute(0, 2, 3, 1))


def local_attention_reference(mixer: LocalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The mixer's output by the definition: a loop over every pixel and every in-map
    neighbour (slow; for tests, float64)."""
    b, h, w, c = x.shape
    heads, d, r = mixer.num_heads, mixer.head_dim, mixer.kernel_size // 2
    q, key, v = mixer.qkv(x).reshape(b, h, w, 3, heads, d).unbind(3)
    y = torch.zeros(b, h, w, heads, d, dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            neighbours = [(a, bb) for a in range(i - r, i + r + 1) for bb in range(j - r, j + r + 1)
                          if 0 <= a < h and 0 <= bb < w]
            for head in range(heads):
                for n in range(b):
                    qv = q[n, i, j, head] * d ** -0.5
                    logits = torch.stack([
                        qv @ key[n, a, bb, head]
                        + qv @ torch.cat([mixer.rel_rows[a - i + r], mixer.rel_cols[bb - j + r]])
                        for a, bb in neighbours])
                    weights = logits.softmax(0)
                    y[n, i, j, head] = sum(wt * v[n, a, bb, head] for wt, (a, bb) in zip(weights, neighbours))
    return mixer.proj(y.reshape(b, h, w, c))
