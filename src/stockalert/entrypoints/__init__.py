"""Entry points: the CLI and one module per container role."""
