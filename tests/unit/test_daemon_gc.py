"""The daemon's garbage-collector settings, checked in a child interpreter (they are
process-wide and must not leak into the test process)."""

from __future__ import annotations

import json
import subprocess
import sys

from lxflex.daemon import GC_THRESHOLDS

PROBE = """
import gc, json
from lxflex.daemon import tune_gc
before = gc.get_freeze_count()
tune_gc()
print(json.dumps({"before": before, "after": gc.get_freeze_count(),
                  "thresholds": gc.get_threshold()}))
"""


def test_tune_gc_freezes_start_up_objects_and_raises_thresholds() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    probe = json.loads(out)
    assert probe["before"] == 0
    assert probe["after"] > 10_000  # the imported modules at least
    assert tuple(probe["thresholds"]) == GC_THRESHOLDS
