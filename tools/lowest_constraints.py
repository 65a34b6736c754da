#!/usr/bin/env python3
"""Write pip constraints pinning every dependency range of pyproject.toml to its lowest version.

    python tools/lowest_constraints.py [--extra cpu] [-o constraints.txt]

Reads ``[project].dependencies`` (and the dependencies of each ``--extra``, default ``cpu``) from
pyproject.toml with ``tomllib`` and writes one ``name==X.Y.*`` line per requirement with a lower
bound (``numpy>=1.26`` → ``numpy==1.26.*``), so ``pip install -c FILE -e '.[cpu,test]'`` installs
the oldest release series the project claims to support. `.ci/run` uses it for its lowest-versions
run; because the pins come from pyproject itself they never go stale. A requirement without a
``>=`` / ``~=`` / ``==`` bound is left out (nothing to pin).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[1]
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")
_LOWER = re.compile(r"(?:>=|~=|==)\s*([0-9][0-9A-Za-z.]*)")


def lowest_pin(requirement: str) -> str | None:
    """``numpy>=1.26`` → ``numpy==1.26.*``; ``pyyaml>=6`` → ``pyyaml==6.0.*``; None without a lower bound.

    The extras and environment markers of ``requirement`` are dropped (pip constraints take neither).

    Raises:
        ValueError: ``requirement`` is not a requirement string.
    """
    m = _REQ.match(requirement)
    if m is None:
        raise ValueError(f"cannot parse requirement {requirement!r}")
    name, spec = m.group(1), m.group(3)
    low = _LOWER.search(spec)
    if low is None:
        return None
    parts = low.group(1).rstrip(".*").split(".")
    return f"{name}=={'.'.join((parts + ['0'])[:2])}.*"  # the lowest release series: X.Y


def constraints(pyproject: Path, extras: list[str]) -> list[str]:
    """The constraint lines for ``pyproject``'s dependencies plus those of ``extras``, in file order.

    Raises:
        KeyError: an extra that ``[project.optional-dependencies]`` does not have (names the known ones).
    """
    if tomllib is None:
        raise RuntimeError("tools/lowest_constraints.py needs Python 3.11 or newer (tomllib)")
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise KeyError(f"pyproject.toml has no extra {extra!r} (extras: {', '.join(sorted(optional))})")
        reqs += optional[extra]
    lines = [pin for pin in map(lowest_pin, reqs) if pin is not None]
    return list(dict.fromkeys(lines))


def main(argv: list[str] | None = None) -> int:
    """Command line: print the constraints (or write them to ``-o``); exit 2 on a bad extra."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    ap.add_argument("--extra", action="append", default=None, help="an extra to include (default: cpu)")
    ap.add_argument("-o", "--output", type=Path, default=None, help="write here instead of stdout")
    args = ap.parse_args(argv)
    try:
        lines = constraints(args.pyproject, args.extra if args.extra is not None else ["cpu"])
    except (KeyError, RuntimeError, ValueError) as exc:
        print(f"lowest_constraints: {exc.args[0]}", file=sys.stderr)
        return 2
    text = "".join(f"{line}\n" for line in lines)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
