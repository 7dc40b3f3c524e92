"""Decide: whether a hint should lead to a remediation, from the present state; reads, never writes."""
