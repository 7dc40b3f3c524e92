"""Run: admit a decision, then run its remediation as named, idempotent steps."""
