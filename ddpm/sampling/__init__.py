"""The reverse process: samplers (DDPM, DDIM, DPM-Solver++(2M) and its SDE variant, Heun) with their step counts,
classifier-free guidance (its one rule and its log-SNR interval, ddpm.sampling.guidance), and batched, seeded
generation from a trained module. Imports diffusion and below."""
