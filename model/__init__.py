"""Risk scoring: features, the synthetic generator, training, the artifact, the fast scorer."""
