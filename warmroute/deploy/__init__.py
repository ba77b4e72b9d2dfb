"""Deployment: the TorchScript router file and the vidur global-scheduler plug-in."""
