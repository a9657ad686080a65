"""The ledger: append-only, double-entry, hash-chained records of every screened payment."""
