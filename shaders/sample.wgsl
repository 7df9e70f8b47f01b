// Sampling at computed coordinates (grid sampling, region pooling) family.
