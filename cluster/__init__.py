"""Cluster launch configurations: Ray Jobs, cluster launcher, KubeRay (planned: empty today)."""
