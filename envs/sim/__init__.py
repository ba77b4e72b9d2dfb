"""Simulation glue: workloads, devices, per-replica memory, the roofline predictor, vidur patches and episode metrics."""
