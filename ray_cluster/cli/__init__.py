"""The ``medray`` console script: one click group, one module per subcommand."""
