"""Energy communities: settings, members, allocation keys and settlement."""
