"""The pages' JavaScript against its JSDoc types: TypeScript's ``tsc`` (pinned in package.json,
installed by ``./run.sh`` with ``npm ci``) checks every web/ module that starts with
``// @ts-check``, the pages with web/tsconfig.json and the module worker with
web/tsconfig.worker.json. It emits nothing: the server serves web/ as it is."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"
TSC = REPO / "node_modules" / ".bin" / "tsc"

#: Every module of the pages is type-checked: a file without ``// @ts-check`` would pass
#: unchecked, so each must start with it (a new one too).
CHECKED = sorted(path.name for path in WEB.glob("*.js"))


@pytest.mark.parametrize("config", ["tsconfig.json", "tsconfig.worker.json"])
def test_web_modules_type_check(config):
    assert TSC.exists(), "TypeScript is a dev dependency in package.json (./run.sh installs it)"
    done = subprocess.run([str(TSC), "-p", str(WEB / config), "--pretty", "false"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, f"tsc -p web/{config}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("name", CHECKED)
def test_module_asks_to_be_checked(name):
    assert (WEB / name).read_text().startswith("// @ts-check\n")
