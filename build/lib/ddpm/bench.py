"""`python -m ddpm.bench`, as before the commands moved to ddpm.commands (console script `ddpm-bench`)."""

from ddpm.commands.bench import main

if __name__ == "__main__":
    main()
