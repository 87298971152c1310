"""Gantry: BlockCloset's control-plane metadata node (SQLite per node, kept identical by Raft)."""

from __future__ import annotations

#: The distribution name in pyproject.toml.
DISTRIBUTION = "gantry-node"


def version() -> str:
    """The installed package's version; from a source tree without an install, pyproject.toml's;
    else ``"unknown"``."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    import pathlib
    import tomllib

    try:
        with open(pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":  # computed, so the version is stated once (pyproject.toml)
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
