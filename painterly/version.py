"""The one version string (pyproject.toml reads it; ``painterly --version`` and the run record show it)."""

__version__ = "0.1.0"
