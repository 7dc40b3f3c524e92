"""Intake: what names a cluster (events, Activity Log sweeps, the health check, requests), turned into hints."""
