"""The wattproof command: one entry point, a subcommand per job."""
