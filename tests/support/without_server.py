"""Run `loa …` as a pole's board would, with none of the server's dependencies importable.

``python tests/support/without_server.py speaker --server … --token …``: every top-level
module that a distribution of the ``server`` extra provides (read from pyproject.toml, so a
dependency added there is blocked here too) raises ModuleNotFoundError on import; then the
arguments go to ``loa.__main__.main``. ``… without_server.py --import MODULE…`` only
imports those modules. At exit it prints, as JSON on the last line of stderr, which blocked
modules something tried to import.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import json
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent


def server_modules() -> set[str]:
    """The top-level import names of the ``server`` extra's distributions."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {_dist(req) for req in project["optional-dependencies"]["server"]}
    provides = importlib.metadata.packages_distributions()
    names = {mod for mod, dists in provides.items() if {_dist(d) for d in dists} & wanted}
    missing = wanted - {_dist(d) for dists in provides.values() for d in dists}
    if missing:
        raise SystemExit(f"not installed, cannot block: {sorted(missing)}")
    return names


def _dist(requirement: str) -> str:
    name = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.tried: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        top = fullname.split(".")[0]
        if top in self.names:
            self.tried.add(top)
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
        return None


def main() -> int:
    blocker = Blocker(server_modules())
    already = blocker.names & {m.split(".")[0] for m in sys.modules}
    if already:
        raise SystemExit(f"already imported before blocking: {sorted(already)}")
    sys.meta_path.insert(0, blocker)
    atexit.register(lambda: print(json.dumps(sorted(blocker.tried)), file=sys.stderr))
    if sys.argv[1:2] == ["--import"]:
        for name in sys.argv[2:]:
            importlib.import_module(name)
        return 0
    from loa.__main__ import main as loa_main

    return loa_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
