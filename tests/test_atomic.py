"""Atomic writes give files the mode the umask says, not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path


def test_atomic_writes_respect_the_umask(tmp_path: Path) -> None:
    # a fresh process, so the module reads this umask at import
    code = (
        "import os, sys; from pathlib import Path\n"
        "from radsurv.atomic import atomic_write_bytes\n"
        "atomic_write_bytes(Path(sys.argv[1]), b'case_id\\n')\n"
    )
    for umask, expected in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        target = tmp_path / f"features_{umask:o}.csv"
        subprocess.run(
            [sys.executable, "-c", code, str(target)],
            check=True,
            preexec_fn=lambda umask=umask: os.umask(umask),
        )
        assert stat.S_IMODE(target.stat().st_mode) == expected
        assert target.read_bytes() == b"case_id\n"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
