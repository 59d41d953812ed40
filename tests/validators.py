"""External validators installed from npm by the test recipe into a cache folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

TOOLS_DIR = Path(os.environ.get("CITYTWIN_TOOLS_DIR", Path.home() / ".cache" / "citytwin-tools"))
GLTF_VALIDATOR = TOOLS_DIR / "node_modules" / "gltf-validator"

_SCRIPT = """
const v = require(process.argv[1]);
const fs = require('fs');
(async () => {
  const out = [];
  for (const f of process.argv.slice(2)) {
    const r = await v.validateBytes(new Uint8Array(fs.readFileSync(f)));
    out.push({file: f, numErrors: r.issues.numErrors,
              errors: r.issues.messages.filter(m => m.severity === 0).slice(0, 5)});
  }
  console.log(JSON.stringify(out));
})();
"""


def gltf_validate(paths: list[Path]) -> list[dict]:
    """Khronos glTF-Validator reports (numErrors, first errors) for GLB files."""
    if not GLTF_VALIDATOR.exists() or shutil.which("node") is None:
        raise AssertionError(
            f"gltf-validator is not installed at {GLTF_VALIDATOR}; run 'make test' (its tools step installs it)")
    res = subprocess.run(["node", "-e", _SCRIPT, str(GLTF_VALIDATOR), *map(str, paths)],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(res.stdout)
