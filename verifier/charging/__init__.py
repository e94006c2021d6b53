"""Charging: sessions from the chargers' readings, OCMF records (ours and third parties'),
OCPI, tokens, the green share."""
