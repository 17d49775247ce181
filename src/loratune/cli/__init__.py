"""Command-line interface: one small module per command; ``app.py`` wires them together."""
