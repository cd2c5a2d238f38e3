"""What turns the library into commands: run_app (the command line checked, then Hydra over one config), run folders
and devices, the configs' resolvers, the sweep callbacks and the checks of the commands' own options. Imports
evaluation and below, never a command."""
