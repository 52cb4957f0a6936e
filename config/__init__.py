"""Offgrid configuration: typed settings read from the environment, validated once."""

from config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
