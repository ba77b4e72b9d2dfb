"""The two-tier prefix cache and the prefix-sharing workloads that exercise it (Mooncake trace, shared prefix, multi-turn)."""
