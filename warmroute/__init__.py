"""The ``warmroute`` command-line interface."""
