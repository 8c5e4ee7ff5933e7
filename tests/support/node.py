"""Running the pages' own JavaScript modules under node (Debian's nodejs, installed by
scripts/test), for tests that check what a page writes without a browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from loa.web.pages import STATIC

NODE = shutil.which("node") or "node"


def run_script(script: str, cases: Any, *, tz: str | None = None) -> Any:
    """``script`` (an ES module; ``process.argv[1]`` is the static folder, standard input the
    JSON of ``cases``) run under node, in time zone ``tz`` if given; its JSON output."""
    env = None if tz is None else {**os.environ, "TZ": tz}
    proc = subprocess.run(
        [NODE, "--input-type=module", "-e", script, str(STATIC)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
