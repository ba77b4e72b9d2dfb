"""Ray Tune search spaces and sweep drivers over the warm-start hyperparameters (planned: empty today)."""
