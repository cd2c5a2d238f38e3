"""Sample-quality metrics in an MNIST feature space (Inception features mean nothing on 28x28 digits, and its
weights cannot be downloaded offline)."""
