"""The operator's command line (`python -m remediation`)."""
