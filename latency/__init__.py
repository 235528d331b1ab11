"""Device latency profiling: time networks, fit per-op lookup tables, validate them."""
from .graph_table import GraphLatencyTable, ProfileError

__all__ = ["GraphLatencyTable", "ProfileError", "load_profile", "find_profile", "PROFILE_DIR"]

from .registry import PROFILE_DIR, find_profile, load_profile  # noqa: E402
