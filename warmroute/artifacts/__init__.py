"""Artefact directories: every file name (``run_dir``), the metadata that lets a mismatch be refused, atomic writes."""
