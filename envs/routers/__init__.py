"""Routers: classic heuristics and cache-aware/production rules, all behind one registry (``heuristics``)."""
