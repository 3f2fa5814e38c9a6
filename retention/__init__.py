"""Core of the retention platform: settings, parameters, data contract, database and CLI."""
