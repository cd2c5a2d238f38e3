"""`python -m ddpm.metrics.classifier`, as before the command moved to ddpm.commands.judge (console script
`ddpm-judge`)."""

from ddpm.commands.judge import main

if __name__ == "__main__":
    main()
