"""The one scaling between 8-bit pixels and the model's [-1, 1] (to_unit_range, to_pixels), and turning batches of
[-1, 1] images into pictures: grids, denoising strips and GIFs."""

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from ddpm.files import written


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float in [-1, 1], what the model is trained on and samples."""
    return images.float() / 127.5 - 1


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (pictures; ddpm.evaluation.scores.quantize makes them 8-bit), the inverse of to_unit_range."""
    return ((images.float() + 1) / 2).clamp(0, 1)


def grid(images: torch.Tensor, nrow: int = 10) -> torch.Tensor:
    """A 3 x H x W picture of [-1, 1] images, `nrow` per row, on a white border."""
    return make_grid(to_pixels(images.cpu()), nrow=nrow, padding=2, pad_value=1.0)


def save_picture(picture: torch.Tensor, path: Path) -> Path:
    """A 3 x H x W picture in [0, 1] as a PNG, written whole or not at all."""
    with written(path) as f:
        save_image(picture, f, format="png")
    return path


def save_grid(images: torch.Tensor, path: Path, nrow: int = 10) -> Path:
    return save_picture(grid(images, nrow), path)


def trajectory_strip(trajectory: list, max_images: int = 10) -> torch.Tensor:
    """One row per image, one column per recorded timestep (noise on the left, sample on the right)."""
    frames = torch.stack([x[:max_images] for _, x in trajectory], dim=1)  # N x F x 1 x H x W
    return grid(frames.flatten(0, 1), nrow=len(trajectory))


def save_trajectory_gif(trajectory: list, path: Path, nrow: int = 10, frame_ms: int = 120) -> Path:
    from PIL import Image

    frames = [Image.fromarray((grid(x, nrow)[0] * 255).round().byte().numpy()) for _, x in trajectory]
    # Hold the final sample so that the loop pauses on it.
    frames += [frames[-1]] * 8
    with written(path) as f:
        frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return path
