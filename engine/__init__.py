"""Civicflow: community-governance processes defined in YAML, run by a small engine.

The core (specs, loader, expressions, transitions) knows neither Flask nor TinyDB;
``engine.store`` holds the storage implementations and ``engine.web`` the Flask app.
"""
from __future__ import annotations

__version__ = "0.1.0"
