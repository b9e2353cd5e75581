"""Training: datasets (manifests, synthetic generator, folder import) and training loops."""
