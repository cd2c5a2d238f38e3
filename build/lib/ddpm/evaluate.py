"""`python -m ddpm.evaluate`, as before the commands moved to ddpm.commands (console script `ddpm-evaluate`)."""

from ddpm.commands.evaluate import main

if __name__ == "__main__":
    main()
