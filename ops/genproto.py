"""Regenerate the committed protobuf/gRPC Python modules from proto/.

Usage: ``python ops/genproto.py [--out DIR]`` (default: the repository root, so the modules land in
``gantry/pb/...``). Needs the pinned ``grpcio-tools`` from the ``dev`` extra. The test
``tests/unit/test_generated_code.py`` regenerates into a temporary directory and fails when the
committed modules differ.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def proto_files() -> list[pathlib.Path]:
    """All .proto sources under proto/, sorted for a stable order."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: pathlib.Path) -> None:
    """Run protoc (from grpcio-tools) on every proto file, writing modules under ``out``.

    Raises SystemExit with protoc's status when generation fails.
    """
    from grpc_tools import protoc  # imported here: only needed by developers

    out.mkdir(parents=True, exist_ok=True)
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(rc)
    # Every generated directory must be an importable package.
    for d in (out / "gantry" / "pb").rglob("*"):
        if d.is_dir() and not (d / "__init__.py").exists():
            (d / "__init__.py").write_text("")
    init = out / "gantry" / "pb" / "__init__.py"
    if not init.exists():
        init.write_text("")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT)
    args = parser.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
