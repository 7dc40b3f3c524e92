"""Tests of the sandbox itself: that it answers as Azure does."""
