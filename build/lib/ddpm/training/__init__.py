"""Training: the LightningModule (loss, label dropout, optimiser and learning-rate schedule), the callbacks that belong
to diffusion training (sample grids, milestones, picklable EMA) and checkpoint IO (atomic writes, weights_only reads,
checkpoints of older versions). Imports models, data, sampling, diffusion and below."""
