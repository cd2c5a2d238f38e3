"""MNIST as in-memory uint8 tensors (the LightningDataModule), and images: the one scaling between pixels and the
model's [-1, 1], grids, denoising strips and GIFs. Imports only errors and validation."""
