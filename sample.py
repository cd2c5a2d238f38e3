"""Sample digits from a checkpoint: python sample.py ckpt=PATH n=100 sampler=ddim steps=50 guidance=2 seed=0
(the same as the console script `ddpm-sample`)."""

from ddpm.commands.sample import main

if __name__ == "__main__":
    main()
