"""Load generator and report: many simulated speakers against a real relay."""
