"""Sluice: validated ingestion of hydraulic sensor readings into TimescaleDB."""

__version__ = "0.1.0"
