"""Channel bills and reconciliation runs arrive with the reconciliation issue."""
