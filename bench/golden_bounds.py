"""Bounds on a fixed set of curves, written to JSON and compared: proof that a refactor left the suggestion alone.

`python bench/golden_bounds.py write FILE` records, for 1,600 seeded synthetic curves (linear and exp ladders, noise,
spikes, NaN/inf, negative and tiny losses, never-diverging, still-falling, flat, and sparse metric curves; each read
as an SGD test and as an adaptive optimizer's) and for the range tests of the quality benchmark's tasks (seeds 0-2),
every field of the suggested bounds, the divergence verdict and the smoothed curve's checksum. `... check FILE`
recomputes them and lists every difference.
Run `write` before a behaviour-preserving change and `check` after it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SYNTHETIC_CURVES = 1600


def _shape(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fall (sigmoid) and maybe a blow-up, placed at random on the sampled axis `u` (normalised 0..1)."""
    c, w = rng.uniform(0.1, 0.7), rng.uniform(0.01, 0.15)
    fall = rng.uniform(0.05, 5.0)
    y = 1.0 - fall / (1.0 + np.exp(-(u - c) / w))
    kind = rng.integers(0, 4)
    if kind <= 1:  # blow-up
        d, dw = rng.uniform(c + 0.05, 1.2), rng.uniform(0.01, 0.1)
        y = y + np.exp(np.minimum((u - d) / dw, 50.0)) - np.exp((u[0] - d) / dw)
    elif kind == 2:  # slow rise after the fall (a ragged climb)
        y = y + rng.uniform(0.0, 2.0) * fall * np.clip(u - c - 3 * w, 0, None) ** 2
    return y


def synthetic_case(i: int) -> dict[str, Any]:
    """Curve number i: deterministic from i."""
    from clrfind.ladder import lr_ladder

    rng = np.random.default_rng(1000 + i)
    mode = "exp" if i % 2 else "linear"
    n = int(rng.choice([12, 25, 40, 60, 100, 150, 200, 300, 500, 1000]))
    low = float(10 ** rng.uniform(-6, -3))
    high = low * float(10 ** rng.uniform(0.6, 6.5))
    lrs = lr_ladder(low, high, n, mode)  # type: ignore[arg-type]
    u = np.linspace(0.0, 1.0, n)
    y = _shape(u, rng)
    family = i % 8
    if family == 1:
        y = y + rng.uniform(0.001, 0.6) * np.ptp(y) * rng.standard_normal(n)
    elif family == 2:
        y = y + 0.05 * np.ptp(y) * rng.standard_t(3, n)
        spikes = rng.integers(0, n, size=max(1, n // 30))
        y[spikes] += rng.uniform(1, 10) * np.ptp(y)
    elif family == 3:
        cut = int(rng.integers(n // 3, n))
        y[cut:] = rng.choice([np.nan, np.inf, -np.inf])
    elif family == 4:
        y = (y - y.max()) * rng.uniform(0.5, 5) - rng.uniform(0, 10)  # negative losses
    elif family == 5:
        y = y * 1e-6 + 1e-5  # tiny losses
    elif family == 6:
        y = np.full(n, 1.0) + rng.uniform(0, 0.05) * rng.standard_normal(n)  # flat / pure noise
    elif family == 7:
        y = y + 0.02 * rng.standard_normal(n)
    stop = str(rng.choice(["completed", "completed", "diverged", "interrupted", "error", "non-finite"]))
    return {"lrs": lrs, "losses": y, "mode": mode, "stop_reason": stop, "planned_max_lr": high}


def _bounds_dict(bounds: Any) -> dict[str, Any] | None:
    if bounds is None:
        return None
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in bounds.model_dump().items()
    }


def _checksum(values: Any) -> float:
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return float(np.nansum(arr * np.arange(1, arr.size + 1)))


def _synthetic_bounds(case: dict[str, Any], i: int, adaptive: str | None) -> Any:
    from clrfind import analysis

    lrs, y = case["lrs"], case["losses"]
    if i % 16 == 15:  # a sparse metric curve (the paper's accuracy test), every 16th case
        k = max(1, lrs.size // 30)
        acc = 1.0 - y[::k] / max(float(np.nanmax(np.abs(y))), 1e-12)
        return analysis.suggest_bounds_from_metric(
            lrs[::k],
            acc,
            higher_is_better=True,
            mode=case["mode"],
            stop_reason=case["stop_reason"],
            adaptive=adaptive,
        )
    return analysis.suggest_bounds(
        lrs,
        y,
        mode=case["mode"],
        stop_reason=case["stop_reason"],
        planned_max_lr=case["planned_max_lr"],
        adaptive=adaptive,
    )


def synthetic_records() -> dict[str, Any]:
    """Every curve read twice: as an SGD test and as an adaptive optimizer's, whose peak and ceiling differ."""
    from clrfind import analysis

    out: dict[str, Any] = {}
    for i in range(SYNTHETIC_CURVES):
        case = synthetic_case(i)
        y = case["losses"]
        index, reason = analysis.find_divergence(y)
        out[f"synthetic-{i}"] = {
            "bounds": _bounds_dict(_synthetic_bounds(case, i, None)),
            "adaptive_bounds": _bounds_dict(_synthetic_bounds(case, i, "Adam")),
            "divergence": [index, reason],
            "smoothed": _checksum(analysis.smooth(y)),
        }
    return out


def quality_records(seeds: list[int]) -> dict[str, Any]:
    """The range tests of the quality benchmark's tasks, as its clrfind method runs them."""
    import tempfile

    from bench.quality.methods import ClrfindSettings, clrfind_test
    from bench.quality.tasks import TASKS
    from clrfind.analysis import find_divergence

    settings = ClrfindSettings()
    out: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix="golden-"))
    for name, task in TASKS.items():
        for seed in seeds:
            result = clrfind_test(task, seed, settings, folder)
            # On CPU the engine may stop up to 3 steps after the confirmed divergence, depending on how fast the
            # steps ran (its chunks follow wall time): the losses are compared up to the divergence only.
            index, _ = find_divergence(np.array([np.nan if v is None else v for v in result.losses]))
            upto = result.steps_run if index is None else index + 1
            out[f"{name}-seed{seed}"] = {
                "bounds": _bounds_dict(result.bounds),
                "stop": [result.stop_reason, result.stop_detail],
                "losses": _checksum(result.losses[:upto]),
            }
    return out


def _current_names(value: Any) -> Any:
    """A file written before results schema 3 in today's names (bounds.min_lr is now base_lr)."""
    names = {"min_lr": "base_lr", "min_rationale": "base_rationale"}
    if isinstance(value, dict):
        return {names.get(k, k): _current_names(v) for k, v in value.items()}
    return value


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in _differences(a, b, f"{path}[{i}]")
        ]
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/golden_bounds.py", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["write", "check"])
    p.add_argument("file", type=Path)
    p.add_argument(
        "--no-quality", action="store_true", help="synthetic curves only (seconds instead of minutes)"
    )
    p.add_argument("--seeds", type=int, default=3, help="quality-benchmark seeds 0..N-1 (default 3)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    records = {"synthetic": synthetic_records()}
    if not args.no_quality:
        records["quality"] = quality_records(list(range(args.seeds)))
    if args.action == "write":
        args.file.write_text(json.dumps(records, indent=1, sort_keys=True), encoding="utf-8")
        print(f"wrote {sum(len(v) for v in records.values())} records to {args.file}")
        return 0
    old = _current_names(json.loads(args.file.read_text(encoding="utf-8")))
    new = json.loads(json.dumps(records, sort_keys=True))
    if args.no_quality:
        old.pop("quality", None)
    diffs = _differences(old, new)
    with_bounds = sum(
        1 for r in new["synthetic"].values() if r["bounds"] and r["bounds"]["max_lr"] is not None
    )
    print(
        f"{sum(len(v) for v in new.values())} records ({len(new['synthetic'])} synthetic curves, "
        f"{with_bounds} with bounds; {len(new.get('quality', {}))} quality-bench range tests): "
        f"{len(diffs)} differences"
    )
    for line in diffs[:50]:
        print(f"  {line}")
    if len(diffs) > 50:  # the rest by record, so no changed curve goes unseen
        counts: dict[str, int] = {}
        for line in diffs[50:]:
            record = ".".join(line.split(":", 1)[0].split(".")[:2])
            counts[record] = counts.get(record, 0) + 1
        print(f"  ... and {len(diffs) - 50} more in: " + ", ".join(f"{k} ({v})" for k, v in counts.items()))
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
