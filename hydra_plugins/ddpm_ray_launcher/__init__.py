"""Hydra builds a launcher only from a class that it found under the hydra_plugins package: the project's Ray
launcher (ddpm/cli/ray_launcher.py), named here for `hydra.launcher._target_` (conf/hydra/launcher/ray.yaml)."""

from ddpm.cli.ray_launcher import RayLauncher as _RayLauncher


class RayLauncher(_RayLauncher):
    pass
