"""Artefact I/O, just above ``envs``: every file name of every output (``run_dir``), the metadata that lets a
mismatched or outdated artefact be refused (``metadata``), and atomic writes (``atomic``)."""
