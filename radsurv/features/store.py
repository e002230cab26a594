"""Crash-safe per-case results next to the output: ``OUT.parts/<case_id>.<settings hash>.json``.

Each finished case is written at once, atomically (temporary file, fsync, rename), so a run
killed at any moment leaves only whole files. The settings hash in the name keeps results of
different settings apart: a rerun with other settings never reads them.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from radsurv.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def parts_dir(output: Path) -> Path:
    """The parts folder of an output file: ``features.csv`` -> ``features.csv.parts``."""
    return output.with_name(output.name + ".parts")


class PartStore:
    """Finished cases of one settings hash in one folder."""

    def __init__(self, folder: Path, settings_hash: str) -> None:
        self.folder = Path(folder)
        self.settings_hash = settings_hash

    def path(self, case_id: str) -> Path:
        """File of one case (unsafe characters of the id replaced by ``_``)."""
        return self.folder / f"{_UNSAFE.sub('_', case_id)}.{self.settings_hash}.json"

    def load(self, case_id: str) -> dict[str, Any] | None:
        """A stored case record, or None when absent or unreadable (then it is recomputed)."""
        path = self.path(case_id)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable part %s (%s); recomputing the case", path, exc)
            return None
        if record.get("case_id") != case_id or record.get("settings_hash") != self.settings_hash:
            logger.warning("ignoring part %s: it belongs to another case or settings", path)
            return None
        return record

    def save(self, record: dict[str, Any]) -> Path:
        """Write one case record atomically; floats round-trip exactly (NaN kept as NaN)."""
        path = self.path(record["case_id"])
        atomic_write_bytes(path, json.dumps(record, allow_nan=True).encode())
        return path

    def remove(self, case_id: str) -> None:
        """Forget a stored case (``--force``)."""
        self.path(case_id).unlink(missing_ok=True)

    def other_settings(self) -> list[Path]:
        """Parts of other settings hashes in the folder (reported, never read)."""
        if not self.folder.is_dir():
            return []
        own = f".{self.settings_hash}.json"
        return sorted(p for p in self.folder.glob("*.json") if not p.name.endswith(own))
