"""Helpers shared by every test tier (no fixtures: those live in the conftest files)."""
