"""Thin entry points, one per pipeline stage: `python -m jobs.<stage> --help`."""
