"""py-code-mode."""
