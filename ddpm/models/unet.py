"""A compact UNet for 28x28 images: 28 -> 14 -> 7 and back (or 14 -> 7 on 2x2 patches), residual blocks with
GroupNorm, a sinusoidal time embedding plus a class embedding whose extra row is the "null" class of
classifier-free guidance."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ddpm.validation import boolean, integer, number, positive_int, refuse

HEADS = 4  # self-attention heads: the attention levels' width must divide by it


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of integer timesteps (Vaswani et al. 2017), as in Ho et al. 2020."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


def check_shape(channels, channel_mults, num_res_blocks, attention, num_classes, dropout, in_channels, patch_size,
                image_size, skip_stem_and_downsample) -> None:
    """What the layers below can build: GroupNorm takes any width (gcd(8, width) groups), but the sinusoidal time
    embedding has `channels` features only when that number is even, the attention heads split the last level's
    width in HEADS, and every level but the last halves the feature maps."""
    integer("model.channels", channels, low=2)
    if channels % 2:
        raise refuse("model.channels", channels,
                     "an even number (it is the width of the sinusoidal time embedding), e.g. 48")
    if isinstance(channel_mults, (str, bytes)) or not hasattr(channel_mults, "__len__") or not len(channel_mults):
        raise refuse("model.channel_mults", channel_mults, "a list of positive integers, one per level, e.g. [1,2,2]")
    for mult in channel_mults:
        if not isinstance(mult, int) or isinstance(mult, bool) or mult < 1:
            raise refuse("model.channel_mults", channel_mults,
                         "a list of positive integers, one per level, e.g. [1,2,2]")
    positive_int("model.num_res_blocks", num_res_blocks)
    boolean("model.attention", attention)
    if attention and (channels * channel_mults[-1]) % HEADS:
        raise refuse("model.channels", channels, f"a multiple of {HEADS} with model.attention=true: the last level's "
                     f"{channels * channel_mults[-1]} channels are split into {HEADS} attention heads")
    integer("model.num_classes", num_classes, low=0, hint=" (0: unconditional)")
    number("model.dropout", dropout, 0, 1, high_open=True)
    positive_int("model.in_channels", in_channels)
    positive_int("model.image_size", image_size)
    positive_int("model.patch_size", patch_size)
    boolean("model.skip_stem_and_downsample", skip_stem_and_downsample)
    if image_size % patch_size:
        raise refuse("model.patch_size", patch_size, f"a divisor of the image size {image_size}, e.g. 1 or 2")
    top, halvings = image_size // patch_size, len(channel_mults) - 1
    if top % 2**halvings:
        raise refuse("model.channel_mults", channel_mults, f"fewer levels: {len(channel_mults)} levels halve "
                     f"{top}x{top} feature maps {halvings} times, which needs a size divisible by {2**halvings}")


def zero_init(module: nn.Module) -> nn.Module:
    # Residual branches start as the identity, which makes deep stacks train from the first step.
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        # Scale and shift from the embedding (FiLM); conditions more strongly than adding a bias.
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int = HEADS):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """channels * channel_mults[i] feature maps at level i, each level half the size of the one before;
    `attention` adds self-attention at the last level (in the middle block and the blocks of that level).
    num_classes=0 makes it unconditional.

    patch_size=2 folds each 2x2 pixel patch into channels before the first convolution (and unfolds the output):
    the network then starts at 14x14. On a CPU, convolutions over few channels at full resolution use the cores
    worst (their backward pass most of all); a patched 716k UNet trained about twice as fast as a full-resolution
    one of about that size (docs/speed.md, "2x2 patches").

    skip_stem_and_downsample=True skip-connects every down layer's output, the stem's and the downsamplers' too,
    which takes num_res_blocks + 1 up blocks per level (Ho et al. 2020). False skip-connects only the res blocks'
    outputs, with one up block per down block: the blocks it drops are the costliest (at the top level, reading
    twice the channels), a third of `small`'s FLOPs."""

    def __init__(
        self,
        channels: int = 32,
        channel_mults: tuple = (1, 2, 2),
        num_res_blocks: int = 1,
        attention: bool = True,
        num_classes: int = 10,
        dropout: float = 0.0,
        in_channels: int = 1,
        patch_size: int = 1,
        image_size: int = 28,
        skip_stem_and_downsample: bool = True,
    ):
        super().__init__()
        check_shape(channels, channel_mults, num_res_blocks, attention, num_classes, dropout, in_channels, patch_size,
                    image_size, skip_stem_and_downsample)
        self.num_classes = num_classes
        self.null_label = num_classes  # the extra embedding row, used when the label is dropped
        self.time_dim = channels
        emb_dim = 4 * channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None

        widths = [channels * m for m in channel_mults]
        last = len(widths) - 1
        patch_channels = in_channels * patch_size**2
        self.to_patches, self.from_patches = nn.PixelUnshuffle(patch_size), nn.PixelShuffle(patch_size)
        self.stem = nn.Conv2d(patch_channels, channels, 3, padding=1)

        self.skip_stem_and_downsample = skip_stem_and_downsample
        self.down = nn.ModuleList()
        skip_widths, ch = [channels] if skip_stem_and_downsample else [], channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(self._block(ch, width, emb_dim, dropout, attention and level == last))
                ch = width
                skip_widths.append(ch)
            if level != last:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                if skip_stem_and_downsample:
                    skip_widths.append(ch)

        attend = [SelfAttention(ch)] if attention else []
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), *attend, ResBlock(ch, ch, emb_dim, dropout)])

        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + skip_stem_and_downsample):
                self.up.append(self._block(ch + skip_widths.pop(), width, emb_dim, dropout,
                                           attention and level == last))
                ch = width
            if level != 0:
                # Convolve before upsampling: the same receptive field at a quarter of the cost.
                self.up.append(nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1),
                                             nn.Upsample(scale_factor=2, mode="nearest")))

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, patch_channels, 3, padding=1)))

    @staticmethod
    def _block(in_ch, out_ch, emb_dim, dropout, attention):
        block = ResBlock(in_ch, out_ch, emb_dim, dropout)
        return nn.ModuleList([block, SelfAttention(out_ch)]) if attention else nn.ModuleList([block])

    def embed(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.time_mlp(sinusoidal_embedding(t, self.time_dim))
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full_like(t, self.null_label)
            emb = emb + self.class_emb(labels)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, labels)
        h = self.stem(self.to_patches(x))
        skips = [h] if self.skip_stem_and_downsample else []
        for layer in self.down:
            h = self._run(layer, h, emb)
            if self.skip_stem_and_downsample or isinstance(layer, nn.ModuleList):
                skips.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = self._run(layer, torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.from_patches(self.out(h))

    @staticmethod
    def _run(layer, h, emb):
        if isinstance(layer, nn.ModuleList):
            for sub in layer:
                h = sub(h, emb)
            return h
        return layer(h)
