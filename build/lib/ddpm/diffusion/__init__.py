"""The forward process and what follows from it: noise schedules (float64), the Gaussian diffusion (training targets,
posterior, conversions between network outputs, x0 and eps) and the variational bound. Imports only errors and
validation."""
