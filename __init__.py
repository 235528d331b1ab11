"""widthnas: hardware-aware channel-width search (AOWS/OWS) under a measured latency budget.

Installed as one namespace: `widthnas.models` (search spaces, networks), `widthnas.latency`
(profiling, latency tables), `widthnas.mrf` (the width MRF and its solvers, no torch) and
`widthnas.nas` (training, search, export, the CLI). The repository keeps them as top-level folders;
pyproject.toml maps them under `widthnas` so that they never shadow a user's own `models` or `nas`.
"""
__version__ = "0.1.0"
