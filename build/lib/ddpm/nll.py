"""`python -m ddpm.nll`, as before the commands moved to ddpm.commands (console script `ddpm-nll`)."""

from ddpm.commands.nll import main

if __name__ == "__main__":
    main()
