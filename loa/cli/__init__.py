"""Command-line front ends; each module registers one `loa` subcommand."""
