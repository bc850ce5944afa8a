"""Datasets: readers for real formats (auto-detected from a path) and the built-in shapes world."""
