"""Provenance files: checks (pure: what `wattproof verify` imports) and build (from the database)."""
