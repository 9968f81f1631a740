"""Defaults shared by the command-line front ends (``pubsubd`` and ``pubsubd admin``)."""

from __future__ import annotations

DEFAULT_CONFIG = "config.example.yaml"  # the configuration file read when --config is not given
