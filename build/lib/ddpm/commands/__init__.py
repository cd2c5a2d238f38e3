"""One module per command, each a Hydra app run by `ddpm.cli.app.run_app` with a `main()` for its console script
(pyproject.toml) and `python -m ddpm.commands.<name>`. A command imports the library and `run_app`, never another
command."""
