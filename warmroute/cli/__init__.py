"""The ``warmroute`` command: one module per subcommand, and the shared flag builders."""
