"""pyproject.toml installs every package in the tree, and the actors only as ``gantry.actors``."""

from __future__ import annotations

import tomllib

from tests.support import REPO


def _setuptools() -> dict[str, object]:
    with open(REPO / "pyproject.toml", "rb") as f:
        table: dict[str, object] = tomllib.load(f)["tool"]["setuptools"]
    return table


def test_every_package_is_listed() -> None:
    listed = set(_setuptools()["packages"])  # type: ignore[call-overload]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "gantry").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    assert found | {"gantry.actors"} == listed


def test_actors_install_under_gantry() -> None:
    assert _setuptools()["package-dir"] == {"gantry.actors": "actors"}
    assert (REPO / "actors" / "__init__.py").exists()


def test_type_checkers_see_the_actors_as_gantry_actors() -> None:
    # mypy cannot run setuptools' editable import hook: without this link every
    # ``from gantry.actors... import`` was a missing module, typed as Any.
    link = REPO / "gantry" / "actors"
    assert link.is_symlink() and link.resolve() == (REPO / "actors").resolve()
