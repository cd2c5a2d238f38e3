"""Denoising diffusion on MNIST with PyTorch Lightning and Hydra.

The subpackages are layers; each may import the ones above it in this list and never one below it
(tests/test_layers.py reads every import and checks this):

    errors, validation   the one-line errors and the checks of config values every layer shares
    files                writing a file whole or not at all; a full disk as one line
    diffusion            noise schedules, the Gaussian process q(x_t | x_0) and its posterior, the likelihood bound
    sampling             reverse-process samplers, the guidance rule, batched seeded generation
    models               the denoising networks
    data                 MNIST as tensors, and images in [-1, 1] <-> pixels and pictures
    training             the LightningModule, its callbacks, checkpoint IO, exported models
    evaluation           the judge network, FID/KID/accuracy, the compare report's parts
    cli                  the Hydra glue: run_app, run folders, resolvers, sweep callbacks, the commands' checks
    commands             one module per command (train, sample, evaluate, compare, nll, bench, judge, export); they
                         import the library and `run_app`, never each other
"""
