from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from ddpm.errors import ConfigError
from ddpm.models.unet import ResBlock, UNet

MODELS = Path(__file__).resolve().parents[1] / "conf" / "model"


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def randomised(net):
    for p in net.parameters():
        nn.init.normal_(p, std=0.05)
    return net.eval()


def test_model_sizes():
    sizes = {p.stem: n_params(instantiate(OmegaConf.load(p))) for p in MODELS.glob("*.yaml")}
    assert sizes["tiny"] < 200_000
    assert sizes["tiny"] < sizes["small"] < sizes["base"]
    assert 9e6 < sizes["base"] < 13e6


@pytest.mark.parametrize("attention", [False, True])
def test_shapes_and_levels(attention):
    net = UNet(channels=8, attention=attention)
    x = torch.randn(3, 1, 28, 28)
    out = net(x, torch.tensor([0, 10, 999]), torch.tensor([1, 2, 10]))
    assert out.shape == x.shape
    assert net(x, torch.tensor([0, 1, 2])).abs().max() == 0  # zero-initialised output layer


def test_null_label_is_the_default_and_labels_matter():
    net = randomised(UNet(channels=8, num_classes=10))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 400])
    null = torch.full((2,), net.null_label)
    torch.testing.assert_close(net(x, t), net(x, t, null))
    assert not torch.allclose(net(x, t, torch.tensor([1, 1])), net(x, t, torch.tensor([2, 2])))


def test_unconditional_model_ignores_labels():
    net = randomised(UNet(channels=8, num_classes=0))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 400])
    assert not any("class_emb" in name for name, _ in net.named_parameters())
    torch.testing.assert_close(net(x, t, torch.tensor([1, 5])), net(x, t))


def test_time_embedding_matters():
    net = randomised(UNet(channels=8))
    x = torch.randn(1, 1, 28, 28)
    assert not torch.allclose(net(x, torch.tensor([10])), net(x, torch.tensor([900])))


def test_patch_size_two_runs_the_network_at_14_pixels():
    net = randomised(UNet(channels=8, channel_mults=(1, 2), patch_size=2))
    sizes = []
    net.stem.register_forward_hook(lambda module, args, out: sizes.append(out.shape[-1]))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 400])
    out = net(x, t)
    assert out.shape == x.shape and sizes == [14]
    # Pixels of one patch are separate channels, so the network can tell them apart.
    swapped = x.clone()
    swapped[..., 0::2, 0::2], swapped[..., 1::2, 1::2] = x[..., 1::2, 1::2], x[..., 0::2, 0::2]
    assert not torch.allclose(net(swapped, t), out)


@pytest.mark.parametrize("mults, blocks, patch", [((1, 2, 2), 1, 1), ((1, 2), 2, 1), ((1, 1), 1, 2)])
def test_skips_from_res_blocks_only_drop_one_up_block_per_level(mults, blocks, patch):
    shape = dict(channels=8, channel_mults=mults, num_res_blocks=blocks, patch_size=patch)
    every, lean = UNet(**shape), randomised(UNet(**shape, skip_stem_and_downsample=False))
    up_blocks = lambda net: sum(isinstance(m, ResBlock) for m in net.up.modules())  # noqa: E731
    assert up_blocks(every) == len(mults) * (blocks + 1) and up_blocks(lean) == len(mults) * blocks
    x = torch.randn(2, 1, 28, 28)
    assert lean(x, torch.tensor([3, 400])).shape == x.shape
    # The deepest up block reads the middle's output and the deepest down block's, of the same width.
    first_up = next(layer for layer in lean.up if isinstance(layer, nn.ModuleList))[0]
    assert first_up.conv1.in_channels == 2 * lean.mid[-1].conv2.out_channels


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(patch_size=3), "model.patch_size=3 is invalid: use a divisor of the image size 28"),
        (dict(patch_size=2, channel_mults=(1, 2, 2)), "model.channel_mults=[1,2,2] is invalid: use fewer levels"),
        (dict(channels=7), "model.channels=7 is invalid: use an even number"),
        (dict(channels=6, channel_mults=(1, 1), attention=True),
         "model.channels=6 is invalid: use a multiple of 4 with model.attention=true"),
        (dict(channel_mults=()), "model.channel_mults=[] is invalid"),
        (dict(channel_mults=(1, 0)), "model.channel_mults=[1,0] is invalid"),
        (dict(num_res_blocks=0), "model.num_res_blocks=0 is invalid: use an integer >= 1"),
        (dict(dropout=1.0), "model.dropout=1.0 is invalid: use a number in [0, 1)"),
        (dict(num_classes=-1), "model.num_classes=-1 is invalid"),
        (dict(attention="yes"), "model.attention=yes is invalid: use true or false"),
    ],
)
def test_shapes_the_layers_cannot_build_are_refused(kwargs, message):
    with pytest.raises(ConfigError) as raised:
        UNet(**{"channels": 8, **kwargs})
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("channels, attention", [(2, False), (6, False), (10, False), (4, True), (6, True)])
def test_every_width_the_checks_accept_runs(channels, attention):
    """The checks refuse no width the layers can build: an even width works without attention, and with it a
    last level whose width divides into the heads (6 x 2 = 12)."""
    net = UNet(channels=channels, channel_mults=(1, 2), attention=attention)
    x = torch.randn(2, 1, 28, 28)
    assert net(x, torch.tensor([1, 5]), torch.tensor([0, 1])).shape == x.shape
