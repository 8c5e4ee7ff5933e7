"""Tests of the cluster building blocks."""
