"""Reports: tables, held-out learning curves, plots, and run comparisons."""
