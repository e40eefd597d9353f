"""Read annotated sample files: an expectation line above every input line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"
MARK = "# expect: "


@dataclass(frozen=True)
class Sample:
    """One input line and what its grammar must make of it (None: no failure)."""

    path: Path
    number: int
    text: str
    expect: dict | None


def read(path: Path) -> list[Sample]:
    """Return the samples of one file; an expectation must precede every input line."""
    samples, expect, pending = [], None, False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if raw.startswith(MARK):
            body = raw[len(MARK):].strip()
            expect, pending = (None if body == "none" else json.loads(body)), True
        elif raw.startswith("#") or not raw.strip():
            continue
        else:
            if not pending:
                raise AssertionError(f"{path.name}:{number}: input line without '# expect:' above it")
            samples.append(Sample(path, number, raw, expect))
            pending = False
    return samples
