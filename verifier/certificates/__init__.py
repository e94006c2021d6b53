"""Granular certificates: issuance, the registry (accounts, bundles, claims) and its map, hourly matching."""
