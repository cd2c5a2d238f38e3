"""Measuring samples: the judge network (an MNIST CNN whose features FID and KID use, since Inception features mean
nothing on 28x28 digits and cannot be downloaded offline), the scores, sampling for a score, the metrics callback,
and the parts of the compare report. Imports training and below."""
