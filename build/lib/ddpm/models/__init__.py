"""The denoising networks: the UNet every run trains and the original notebooks' net (benchmark only). Imports only
errors and validation: a network knows nothing of the diffusion around it."""
