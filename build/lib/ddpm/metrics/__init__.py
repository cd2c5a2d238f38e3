"""Only `python -m ddpm.metrics.classifier`, as before the judge's training moved to ddpm.commands.judge."""
