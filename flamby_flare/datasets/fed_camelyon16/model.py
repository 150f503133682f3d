"""Fed-Camelyon16's baseline (reference §1.1): gated-attention DeepMIL (Ilse, Tomczak and Welling, ICML 2018) as
FLamby's, 320,258 parameters: H = Linear(2048, 128)(X); attention a = softmax over tiles of
w^T (tanh(V H) * sigmoid(U H)); M = a^T H; classifier Linear(128, 128), ReLU, Linear(128, 64), ReLU,
Linear(64, 1) to a logit.

Deviation (by default): padded tiles (all-zero feature rows, see ``dataset``) get no attention. FLamby does not
mask them, so a slide's zero rows share its attention and its prediction depends on how much it was padded;
``mask_padding=False`` reproduces FLamby exactly (the executor's ``model_args``)."""

from __future__ import annotations

import torch
from torch import nn

from flamby_flare.datasets.fed_camelyon16.common import FEATURES


class Baseline(nn.Module):
    def __init__(self, mask_padding: bool = True, features: int = FEATURES):
        super().__init__()
        self.mask_padding = mask_padding
        self.embedding = nn.Linear(features, 128)
        self.attention_v = nn.Linear(128, 128)
        self.attention_u = nn.Linear(128, 128)
        self.attention_w = nn.Linear(128, 1)
        self.classifier = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, tiles) attention weights; padded tiles get 0 when ``mask_padding``."""
        h = self.embedding(x)
        scores = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))).squeeze(-1)
        if self.mask_padding:
            real = x.abs().sum(-1) > 0
            real = real | ~real.any(dim=1, keepdim=True)  # a slide without any tile: uniform attention
            scores = scores.masked_fill(~real, float("-inf"))
        return torch.softmax(scores, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attention(x)
        m = torch.einsum("bt,btd->bd", a, self.embedding(x))
        return self.classifier(m)
