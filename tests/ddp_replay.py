"""A data-parallel run replayed by one process, the oracle of the multi-process tests (tests/test_slurm.py, the two
"nodes" of tests/test_scaling.py): from a full checkpoint of the run, each step takes every rank's batch with that
rank's own draws (label dropout, t, noise: the rank's generator state, one row of the checkpoint's rng_states),
backpropagates the mean of the ranks' losses (what DDP's all-reduce averages), clips the gradient as the trainer
does, and takes one AdamW step. Training code is the project's (DiffusionModule.training_step, ResumableShuffle);
only the distribution is taken out. The runs it replays have no EMA (callbacks.ema=null), so that a checkpoint's
state_dict holds the trained weights, and validate only at their end: the replay runs none."""

import warnings
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ddpm.data.mnist import ResumableShuffle

# Measured 0 (bitwise equal) on this CPU with torch 2.14 and gloo: two ranks' gradients average as (a + b) / 2 in
# either order. The tolerance is for an all-reduce that sums in another order (float32), which six AdamW steps of lr
# 1e-3 would carry to a few 1e-7; one rank's batches alone end 2.7e-4 away (tests/test_slurm.py).
DDP_ATOL = 1e-6
# Options that make a run replayable: no EMA, one validation, at the end.
REPLAYABLE = ["callbacks.ema=null", "trainer.num_sanity_val_steps=0"]
# The two-process runs the tests compare: 8 steps of the tiny model, replayed from its milestone at step 2.
TWO_RANKS = ["debug=tiny", "trainer.max_steps=8", "trainer.val_check_interval=8", *REPLAYABLE]


def rank_batches(data, rank: int, world: int, step: int):
    """Rank `rank`'s training batches from optimizer step `step` on, as the data module's loader yields them."""
    per_epoch = len(data.train_set) // world // data.batch_size
    epoch, batch = divmod(step, per_epoch)
    while True:
        sampler = ResumableShuffle(len(data.train_set), data.seed, rank, world, start_epoch=epoch,
                                   skip=batch * data.batch_size)
        indices = list(sampler)
        for i in range(0, len(indices) - data.batch_size + 1, data.batch_size):
            yield data.train_set.__getitems__(indices[i : i + data.batch_size])
        epoch, batch = epoch + 1, 0


def replay(run_dir: Path, start: dict, world: int, steps: int) -> dict[str, torch.Tensor]:
    """The weights after `steps` more optimizer steps from checkpoint `start` of the run in `run_dir`, trained by
    one process on the global batches of its `world` ranks."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    module = instantiate(cfg.module, _recursive_=False)
    module.load_state_dict(start["state_dict"])
    optimization = module.configure_optimizers()
    optimizer, scheduler = optimization["optimizer"], optimization["lr_scheduler"]["scheduler"]
    optimizer.load_state_dict(start["optimizer_states"][0])
    scheduler.load_state_dict(start["lr_schedulers"][0])
    data = instantiate(cfg.data)
    data.setup("fit")
    cpu = start["rng_states"]["cpu"]
    states = [cpu[r].clone() for r in range(world)] if cpu.ndim == 2 else [cpu.clone()]
    assert len(states) == world, f"the checkpoint holds {len(states)} generator state(s) for {world} rank(s)"
    streams = [rank_batches(data, r, world, start["global_step"]) for r in range(world)]
    clip = cfg.trainer.gradient_clip_val
    module.train()
    # training_step logs its loss, which needs a trainer; the replay has none and needs no log
    warnings.filterwarnings("ignore", message=r"You are trying to `self.log\(\)` but the `self.trainer`")
    for _ in range(steps):
        optimizer.zero_grad()
        for rank in range(world):
            torch.set_rng_state(states[rank])
            loss = module.training_step(next(streams[rank]), 0)
            (loss / world).backward()
            states[rank] = torch.get_rng_state()
        if clip:
            torch.nn.utils.clip_grad_norm_(module.net.parameters(), clip)
        optimizer.step()
        scheduler.step()
    return {k: v.detach() for k, v in module.state_dict().items()}


def largest_difference(weights: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    assert weights.keys() == expected.keys()
    return max(float((weights[k].double() - expected[k].double()).abs().max()) for k in expected)


def check_two_ranks(run_dir: Path, what: str) -> float:
    """A TWO_RANKS run against its replay: within DDP_ATOL, and far from one rank's batches alone (a run that
    lost the other rank's gradient). Returns the largest difference."""
    start = torch.load(run_dir / "checkpoints" / "milestone_step_000002.ckpt", weights_only=True)
    end = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert end["global_step"] == 8 and end["rng_states"]["cpu"].shape[0] == 2  # one generator state per rank
    difference = largest_difference(end["state_dict"], replay(run_dir, start, world=2, steps=6))
    print(f"{what} vs one process on the global batches, steps 2-8: largest difference {difference:.3g}")
    assert difference < DDP_ATOL
    one_rank = start | {"rng_states": {"cpu": start["rng_states"]["cpu"][:1]}}
    assert largest_difference(end["state_dict"], replay(run_dir, one_rank, world=1, steps=6)) > 100 * DDP_ATOL
    return difference
