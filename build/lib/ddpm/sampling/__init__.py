"""The reverse process: samplers (DDPM, DDIM, DPM-Solver++), classifier-free guidance, and batched, seeded generation
from a trained module. Imports diffusion and below."""
