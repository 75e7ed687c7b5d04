"""Taskerino: a local-first work session recorder."""

__version__ = "0.1.0"
