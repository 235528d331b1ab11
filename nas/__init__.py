"""widthnas orchestration: the CLI, supernet training, search and export."""
import os

# Sliced supernet passes meet ~3k distinct convolution shapes (every layer's c_in x c_out pair);
# oneDNN's default primitive cache (1024) would rebuild them over and over. Read at first use.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")

__version__ = "0.1.0"
