"""`python -m ddpm.compare`, as before the commands moved to ddpm.commands (console script `ddpm-compare`)."""

from ddpm.commands.compare import main

if __name__ == "__main__":
    main()
