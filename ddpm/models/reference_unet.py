"""The network of the original notebooks this project grew out of, kept as the benchmark's yardstick: the speed of
today's UNets is reported against it (`ddpm-bench`). Not trained by any command."""

import torch
import torch.nn.functional as F
from torch import nn

from ddpm.models.unet import sinusoidal_embedding


class ReferenceUNet(nn.Module):
    """The shape of the original notebooks' MNIST DDPM: one down level, wide convolutions at full resolution,
    additive skips, FiLM-style time and class bias per layer. About 11M parameters. For the benchmark only."""

    num_classes = 10
    null_label = 10

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 256)
        self.time = nn.Linear(128, 256)
        conv = lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1)  # noqa: E731
        down = [(1, 128), (128, 128), (128, 256), (256, 512), (512, 512)]
        up = [(512, 512), (512, 256), (256, 128), (128, 128), (128, 128)]
        self.down = nn.ModuleList(conv(a, b) for a, b in down)
        self.mid = conv(512, 512)
        self.up = nn.ModuleList(conv(a, b) for a, b in up)
        self.film = nn.ModuleList(nn.Linear(256, b) for _, b in [*down, (512, 512), *up])
        self.out = conv(128, 1)

    def forward(self, x, t, labels=None):
        labels = torch.full_like(t, self.null_label) if labels is None else labels
        emb = F.silu(self.time(sinusoidal_embedding(t, 128)) + self.emb(labels))
        films = iter(self.film)
        act = lambda layer, h: F.silu(layer(h) + next(films)(emb)[:, :, None, None])  # noqa: E731
        h, skips = x, []
        for i, layer in enumerate(self.down):
            h = act(layer, h)
            skips.append(h)
            if i == 1:
                h = F.avg_pool2d(h, 2)  # 28 -> 14, the only down level
        h = act(self.mid, h)
        for i, layer in enumerate(self.up):
            h = act(layer, h + skips.pop())
            if i == 2:
                h = F.interpolate(h, scale_factor=2)
        return self.out(h)
