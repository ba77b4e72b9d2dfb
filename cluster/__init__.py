"""Cluster launch configurations (docs/cluster.md): on-prem and AWS cluster-launcher YAMLs, a KubeRay RayJob and its
image. No Python here; `warmroute submit` (warmroute/submit.py) sends jobs to any of these clusters."""
