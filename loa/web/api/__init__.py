"""The JSON API sub-application mounted at /api/v1."""
