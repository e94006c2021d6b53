"""The audit: the ledger replayed, every table derived again and compared."""
