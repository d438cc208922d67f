"""What the self-check chose against what it could have chosen: for each task and seed, every peak it may pick
(max_lr x sqrt(10)^k, from max_lr / 31.6 up to the range test's peak_lr), that peak's trial loss, and what the
exported one cycle at that peak trains to over the task's whole budget; then which one the self-check kept.

The full-budget column is what no rule can see (it is the answer); the trial column is what the self-check judges
on. A rule is good when, from the trial column, it picks the best of the full-budget column; print both and the
regret (the metric lost to the best candidate) to see where it does not. A diagnostic for rule work: run it on the
development half while changing a rule, and on the held-out half only to check the result.

    python -m bench.quality.candidates --half dev [--tasks moons,iris] [--seeds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality.run import select_tasks
from bench.quality.tasks import HALVES, TASKS


def candidates(task_name: str, seed: int) -> dict[str, Any]:
    """One task and seed: the range test through its spec (the self-check on, as a user gets it), every candidate
    peak's trial, and each candidate's full-budget training."""
    import torch

    import clrfind.verify as verify_module
    from bench.quality.methods import ClrfindSettings, clrfind_test, schedule_plan
    from bench.quality.train import train
    from clrfind.export import write_schedule

    torch.set_num_threads(1)
    task = TASKS[task_name]
    seen: dict[str, Any] = {}
    shipped = verify_module.verify

    def recording(bounds, optimizer, budget, run_trial, **kwargs):  # type: ignore[no-untyped-def]
        steps = budget // verify_module.MAX_TRIALS
        up, down = verify_module.candidate_peaks(bounds.max_lr, verify_module.trial_ceiling(bounds))
        peaks = sorted({bounds.max_lr, *up, *down})
        seen.update(bounds=bounds, trials={})
        if steps >= verify_module.MIN_TRIAL_STEPS:
            for peak in peaks:
                losses, stop, check = run_trial(
                    *verify_module.trial_schedule(bounds.base_lr, peak, optimizer, steps)
                )
                run = verify_module._Run(
                    peak, np.asarray(losses, dtype=float), stop, check, kwargs.get("untrained")
                )
                seen["trials"][peak] = run.record()
        checked = shipped(bounds, optimizer, budget, run_trial, **kwargs)
        seen["kept"] = checked[0].peak_lr
        return checked

    verify_module.verify = recording
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = clrfind_test(task, seed, ClrfindSettings(), Path(tmp))
            rows = []
            for peak, trial in sorted(seen.get("trials", {}).items()):
                bounds = seen["bounds"]
                lowered = {"max_lr": peak, "base_lr": bounds.base_lr * peak / bounds.max_lr}
                as_kept = bounds.model_copy(
                    update={"peak_lr": peak, **(lowered if peak < bounds.max_lr else {})}
                )
                path = Path(tmp) / f"peak-{len(rows)}.yaml"
                write_schedule(
                    result.model_copy(update={"bounds": as_kept}), path, policy="auto", epochs=task.epochs,
                    steps_per_epoch=task.steps_per_epoch,
                )  # fmt: skip
                outcome = train(task, schedule_plan(task, path), seed)
                judged = trial.check_loss if trial.check_loss is not None else trial.final_loss
                rows.append({"peak": peak, "trial_loss": judged, "metric": outcome.metric})
    finally:
        verify_module.verify = shipped
    return {"task": task_name, "seed": seed, "kept": seen.get("kept"), "candidates": rows}


def report(records: list[dict[str, Any]]) -> str:
    """Per task: each candidate (as a multiple of the kept peak), its mean trial loss and full-budget metric, and
    the kept peak's regret against the best candidate, on the mean over the seeds."""
    lines = ["| task | candidates: peak / kept -> trial loss, metric (mean over seeds) | kept | best | regret |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name in dict.fromkeys(r["task"] for r in records):
        higher = TASKS[name].metric == "accuracy"
        by_ratio: dict[float, list[tuple[float | None, float]]] = {}
        kept, best = [], []
        for rec in (r for r in records if r["task"] == name and r["candidates"]):
            metrics = {c["peak"]: c["metric"] for c in rec["candidates"]}
            top = (max if higher else min)(metrics.values())
            k = next((m for p, m in metrics.items() if math.isclose(p, rec["kept"], rel_tol=1e-6)), None)
            if k is None:
                continue
            kept.append(k)
            best.append(top)
            for c in rec["candidates"]:
                ratio = round(math.log10(c["peak"] / rec["kept"]) * 2) / 2  # in half decades
                by_ratio.setdefault(ratio, []).append((c["trial_loss"], c["metric"]))
        if not kept:
            lines.append(f"| {name} | no self-check | - | - | - |")
            continue
        cells = []
        for ratio, values in sorted(by_ratio.items()):
            losses = [v for v, _ in values if v is not None]
            trial = f"{np.mean(losses):.3g}" if losses else "failed"
            cells.append(f"10^{ratio:+g}: {trial}, {np.mean([m for _, m in values]):.4g}")
        regret = abs(float(np.mean(best)) - float(np.mean(kept)))
        lines.append(
            f"| {name} | {'; '.join(cells)} | {np.mean(kept):.4g} | {np.mean(best):.4g} | {regret:.4g} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.quality.candidates", description=__doc__.splitlines()[0]
    )
    p.add_argument("--half", choices=[*HALVES, "all"], default="dev", help="which half (default dev)")
    p.add_argument("--tasks", default="", help="comma-separated subset of the half's tasks")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--json", type=Path, help="also write the per-seed records as JSON to this file")
    args = p.parse_args(argv)
    jobs = [(t.name, s) for t in select_tasks(args.half, args.tasks) for s in range(args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        records = list(pool.map(candidates, *zip(*jobs, strict=True)))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1), encoding="utf-8")
    print(report(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
