"""Train a DDPM on MNIST: python train.py [experiment=quickstart] [schedule=cosine] [model=tiny] [-m ...]
(the same as the console script `ddpm-train`)."""

from ddpm.commands.train import main

if __name__ == "__main__":
    main()
