"""widthnas orchestration: the CLI, supernet training, search and export."""
__version__ = "0.1.0"
