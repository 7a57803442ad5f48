"""Rendering: tables, JSON, NDJSON and CSV, progress, and escaping for the terminal."""
