"""Device latency profiling: time networks, fit per-op lookup tables, validate them."""
from .table import LatencyTable, ProfileError

__all__ = ["LatencyTable", "ProfileError", "load_profile", "find_profile", "PROFILE_DIR"]

from .registry import PROFILE_DIR, find_profile, load_profile  # noqa: E402
