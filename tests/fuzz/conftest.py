"""Property-based fuzzing (hypothesis) of everything that reads untrusted input.

Two profiles: ``ci`` (the default, a short run inside ``make test``, well under a minute)
and ``fuzz`` (``make fuzz``: many more inputs per target). Each target counts the inputs it
ran; the counts are printed at the end of the session and written to the file named by
``FUZZ_REPORT`` if set, which is where docs/security.md takes its figures from.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow], derandomize=False, database=None)
settings.register_profile(
    "fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow], database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

INPUTS: Counter[str] = Counter()


@pytest.fixture(scope="session", autouse=True)
def _report_inputs() -> Iterator[None]:
    yield
    if not INPUTS:
        return
    total = sum(INPUTS.values())
    per_target = ", ".join(f"{k} {v}" for k, v in sorted(INPUTS.items()))
    print(f"\nfuzz inputs run: {total} ({per_target})")
    target = os.environ.get("FUZZ_REPORT")
    if target:
        with open(target, "w", encoding="utf-8") as out:
            json.dump({"total": total, "per_target": dict(sorted(INPUTS.items()))}, out, indent=1)
