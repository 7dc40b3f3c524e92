"""Small adapters around the Azure SDK clients; each docstring names the permission it needs."""
