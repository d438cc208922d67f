"""`--clrfind-set module.CONSTANT=V` (bench experiments): the value reaches every module that reads the name, and a
module first imported during a patched run does not keep the patched value for the runs after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.quality.methods import _Patched

REPO = Path(__file__).resolve().parents[1]


def test_a_patch_reaches_a_from_import_and_is_undone() -> None:
    import clrfind.analysis.bounds as bounds
    import clrfind.verify as verify

    real = bounds.HALF_DECADE
    with _Patched((("analysis.bounds.HALF_DECADE", 10.0),)):
        assert bounds.HALF_DECADE == 10.0
        assert verify.HALF_DECADE == 10.0  # verify holds it by a from-import
        assert pytest.approx(real) == verify.STEP  # derived at import: the real value
    assert bounds.HALF_DECADE == verify.HALF_DECADE == real


def test_a_module_first_imported_under_a_patch_keeps_the_real_values() -> None:
    """The bug this guards against: a worker whose first run patched HALF_DECADE imported clrfind.verify then, so
    its STEP (derived at import) stayed a decade for every later run of that worker."""
    script = (
        "import sys\n"
        "from bench.quality.methods import _Patched\n"
        "assert 'clrfind.verify' not in sys.modules\n"
        "with _Patched((('analysis.bounds.HALF_DECADE', 10.0),)):\n"
        "    import clrfind.verify\n"
        "print(clrfind.verify.STEP, clrfind.verify.HALF_DECADE)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert [float(x) for x in out] == pytest.approx([10**0.5, 10**0.5])


def test_an_unknown_constant_is_named() -> None:
    with (
        pytest.raises(AttributeError, match=r"clrfind\.verify has no constant NOPE"),
        _Patched((("verify.NOPE", 1),)),
    ):
        pass
