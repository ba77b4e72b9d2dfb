"""Ray Tune sweeps over training settings: search spaces, the sweep driver, the trial function, result tables."""
