"""Persistence: narrow per-feature store protocols over one embedded SQLite database."""
