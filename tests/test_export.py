"""Schedule export: every policy x optimizer gives kwargs the real torch scheduler accepts, with the LR trace
the bounds promise and training ending at a cycle end; lengths, momentum, errors, formats, load_schedule, and
no torch import for build + render."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO

from clrfind.errors import ClrfindWarning, ExportError
from clrfind.export import (
    AUTO_POLICY,
    COSINE,
    CYCLIC,
    EXP_RANGE_END_FRACTION,
    ONE_CYCLE,
    ONE_CYCLE_FINAL_DIV,
    ONE_CYCLE_MAX_DIV,
    POLICIES,
    build_schedule,
    load_schedule,
    render_schedule,
    scheduler_for,
    verify_schedule,
    write_schedule,
)
from clrfind.results import (
    SCHEMA_VERSION,
    Bounds,
    OptimizerRef,
    RangeTestResult,
    Trial,
    Verification,
    load_results,
)
from clrfind.settings import TrainingLength

BASE, PEAK = 0.012, 0.41
SPE = 10

OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd-momentum": ("torch.optim.sgd.SGD", {"momentum": 0.9, "weight_decay": 5e-4}),
    "sgd-plain": ("torch.optim.SGD", {}),
    "adam": ("torch.optim.adam.Adam", {}),
    "adamw": ("torch.optim.AdamW", {"weight_decay": 0.01, "betas": [0.9, 0.99]}),
}


def make_result(
    *,
    bounds: Bounds | str | None = "ok",
    optimizer: OptimizerRef | str | None = "sgd-momentum",
    steps_per_epoch: int | None = SPE,
) -> RangeTestResult:
    if bounds == "ok":
        bounds = Bounds(
            base_lr=BASE,
            max_lr=PEAK,
            confidence="high",
            base_rationale="starts falling at 0.012",
            max_rationale="stopped falling at 0.41 and diverged at 0.63",
            divergence_lr=0.63,
        )
    if isinstance(optimizer, str):
        target, kwargs = OPTIMIZERS[optimizer]
        optimizer = OptimizerRef(target=target, kwargs=kwargs)
    lrs = [0.01 * (i + 1) for i in range(64)]
    losses = [2.0 - 3 * lr if lr < 0.5 else 0.5 + 40 * (lr - 0.5) ** 2 for lr in lrs]
    return RangeTestResult(
        clrfind_version="0.1.0",
        min_lr=0.01,
        max_lr=0.64,
        planned_steps=64,
        lrs=lrs,
        losses=losses,
        smoothed=losses,
        stop_reason="diverged",
        bounds=bounds,
        steps_per_epoch=steps_per_epoch,
        optimizer=optimizer,
        spec_path="specs/resnet.yaml",
    )


def _import(target: str) -> Any:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def run_schedule(schedule: dict[str, Any]) -> tuple[np.ndarray, list[float], torch.optim.Optimizer, Any]:
    """Build the optimizer and scheduler exactly as the file says and train through training.total_steps.

    Returns the LR and momentum (or beta1) used by every optimizer step, the optimizer and the scheduler.
    """
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = _import(schedule["optimizer"]["target"])([param], **schedule["optimizer"]["kwargs"])
    scheduler = _import(schedule["scheduler"]["target"])(optimizer, **schedule["scheduler"]["kwargs"])
    lrs, momenta = [], []
    for _ in range(schedule["training"]["total_steps"]):
        group = optimizer.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(group["betas"][0] if "betas" in group else group.get("momentum", 0.0))
        param.grad = torch.ones_like(param)
        optimizer.step()
        scheduler.step()
    return np.array(lrs), momenta, optimizer, scheduler


@pytest.mark.parametrize(
    ("epochs", "target", "chosen"), [(30, ONE_CYCLE, "one-cycle"), (None, CYCLIC, "triangular")]
)
def test_auto_policy_is_one_cycle_for_a_known_length_else_triangular(
    epochs: int | None, target: str, chosen: str
) -> None:
    schedule = build_schedule(make_result(), epochs=epochs)  # the default policy is auto
    assert schedule["scheduler"]["target"] == target and schedule["scheduler"]["policy"] == chosen
    assert schedule["notes"][0].startswith(f"policy auto: {chosen}, because")
    explicit = build_schedule(make_result(), policy=chosen, epochs=epochs)
    assert schedule["scheduler"]["kwargs"] == explicit["scheduler"]["kwargs"]
    assert schedule["training"] == explicit["training"]
    run_schedule(schedule)  # torch builds and steps it


# -- every policy x optimizer, for real ----------------------------------------------------------------------


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("policy", [p for p in POLICIES if p != AUTO_POLICY])
def test_policy_optimizer_table_builds_real_schedulers(policy: str, opt_name: str) -> None:
    epochs = 30 if policy == "one-cycle" else None
    schedule = build_schedule(make_result(optimizer=opt_name), policy=policy, epochs=epochs)
    kwargs = schedule["scheduler"]["kwargs"]
    training = schedule["training"]
    total = training["total_steps"]
    lrs, momenta, optimizer, scheduler = run_schedule(schedule)
    assert len(lrs) == total == training["epochs"] * SPE

    if policy in ("triangular", "triangular2", "exp_range"):
        assert schedule["scheduler"]["target"] == CYCLIC and kwargs["mode"] == policy
        step = kwargs["step_size_up"]
        assert step == 4 * SPE and training["cycles"] == 4 and total == 2 * 4 * step
        for c in range(training["cycles"]):
            start, peak = 2 * c * step, 2 * c * step + step
            assert lrs[start] == pytest.approx(BASE)
            amplitude = {
                "triangular": 1.0,
                "triangular2": 0.5**c,
                "exp_range": kwargs.get("gamma", 1.0) ** peak,
            }[policy]
            assert lrs[peak] == pytest.approx(BASE + (PEAK - BASE) * amplitude)
            assert lrs[start : start + 2 * step].max() == pytest.approx(lrs[peak])
        if policy == "exp_range":
            assert lrs.max() < PEAK  # the amplitude decays from the first step on
        else:
            assert lrs.max() == pytest.approx(PEAK)
        # Training ends at a cycle end: the LR after the last step is back at base_lr.
        assert scheduler.get_last_lr()[0] == pytest.approx(BASE)
        if policy == "exp_range":
            assert kwargs["gamma"] ** total == pytest.approx(EXP_RANGE_END_FRACTION)
            assert any("only the amplitude" in n for n in schedule["notes"])
    elif policy == "one-cycle":
        assert schedule["scheduler"]["target"] == ONE_CYCLE and kwargs["total_steps"] == total == 30 * SPE
        # max/base = 34: the start is raised to max/20, Smith's (2018) widest ratio for one cycle
        start = PEAK / ONE_CYCLE_MAX_DIV
        assert lrs[0] == pytest.approx(start)
        peak = int(kwargs["pct_start"] * total) - 1
        assert int(np.argmax(lrs)) == peak and lrs[peak] == pytest.approx(PEAK)
        assert lrs[-1] == pytest.approx(start / ONE_CYCLE_FINAL_DIV) and lrs[-1] == lrs.min()
        assert schedule["optimizer"]["kwargs"]["lr"] == pytest.approx(start)
    else:
        assert schedule["scheduler"]["target"] == COSINE
        t0 = kwargs["T_0"]
        assert kwargs["eta_min"] == BASE and schedule["optimizer"]["kwargs"]["lr"] == PEAK
        assert total % t0 == 0 and total // t0 == training["cycles"]
        for c in range(training["cycles"]):
            assert lrs[c * t0] == pytest.approx(PEAK)
            assert lrs[(c + 1) * t0 - 1] == lrs[c * t0 : (c + 1) * t0].min()
            assert BASE < lrs[(c + 1) * t0 - 1] < BASE + 0.01 * (PEAK - BASE)
        # The next step would be a restart: training stops at the boundary.
        assert scheduler.get_last_lr()[0] == pytest.approx(PEAK)

    has_momentum = opt_name != "sgd-plain"
    if policy == "cosine":
        assert "cycle_momentum" not in kwargs
        assert len(set(momenta)) == 1  # cosine restarts never touch momentum
    elif policy != "one-cycle":
        # CyclicLR keeps the optimizer's own momentum (Smith 2017 cycles only the LR); never turns it on.
        assert kwargs["cycle_momentum"] is False
        assert set(momenta) == {0.9 if has_momentum else 0}
        assert any("momentum stays at the optimizer's value" in n for n in schedule["notes"])
    elif has_momentum:
        assert kwargs["cycle_momentum"] is True
        assert momenta[0] == pytest.approx(0.95)  # high momentum at the low LR ...
        # ... and low at the peak (Smith 2018, one-cycle).
        assert momenta[int(np.argmax(lrs))] == pytest.approx(0.85)
    else:
        # CyclicLR/OneCycleLR with cycle_momentum=True would silently give this SGD momentum 0.9.
        assert kwargs["cycle_momentum"] is False
        assert set(momenta) == {0} and optimizer.param_groups[0]["momentum"] == 0
    verify_schedule(schedule)


def test_momentum_below_09_cycles_under_its_own_value() -> None:
    result = make_result(optimizer=OptimizerRef(target="torch.optim.SGD", kwargs={"momentum": 0.5}))
    kwargs = build_schedule(result, policy="one-cycle", epochs=10)["scheduler"]["kwargs"]
    assert kwargs["max_momentum"] == 0.5 and kwargs["base_momentum"] == pytest.approx(0.45)


@pytest.mark.parametrize(
    ("momentum", "high", "low"), [(0.9, 0.95, 0.85), (0.95, 0.975, 0.925), (0.99, 0.995, 0.985)]
)
def test_momentum_above_09_moves_smiths_cycle_with_it(momentum: float, high: float, low: float) -> None:
    """The bounds were measured at the optimizer's momentum: at 0.99 Smith's 0.85 would take 15x the tested step."""
    result = make_result(optimizer=OptimizerRef(target="torch.optim.SGD", kwargs={"momentum": momentum}))
    schedule = build_schedule(result, policy="one-cycle", epochs=10)
    kwargs = schedule["scheduler"]["kwargs"]
    assert (kwargs["max_momentum"], kwargs["base_momentum"]) == (high, low)
    assert any(f"{high:g} at the low LR and {low:g} at the peak" in n for n in schedule["notes"])
    # the step at the peak relates to the tested step as it does at 0.9: (1 - 0.9) / (1 - 0.85) = 2/3
    assert (1 - momentum) / (1 - low) == pytest.approx(2 / 3)
    _, momenta, _, _ = run_schedule(schedule)
    assert momenta[0] == pytest.approx(high) and min(momenta) == pytest.approx(low)


def test_beta1_zero_and_unknown_optimizers_do_not_cycle() -> None:
    adam0 = make_result(optimizer=OptimizerRef(target="torch.optim.Adam", kwargs={"betas": [0.0, 0.99]}))
    assert (
        build_schedule(adam0, policy="one-cycle", epochs=10)["scheduler"]["kwargs"]["cycle_momentum"] is False
    )
    adagrad = make_result(optimizer=OptimizerRef(target="torch.optim.Adagrad", kwargs={}))
    schedule = build_schedule(adagrad, policy="one-cycle", epochs=10)
    assert schedule["scheduler"]["kwargs"]["cycle_momentum"] is False
    run_schedule(schedule)  # Adagrad has neither momentum nor betas: cycle_momentum=True would raise


def test_one_cycle_keeps_a_10x_minimum_when_the_bounds_are_close() -> None:
    result = make_result(bounds=Bounds(base_lr=0.1, max_lr=0.4, confidence="medium"))
    schedule = build_schedule(result, policy="one-cycle", epochs=5)
    assert schedule["scheduler"]["kwargs"]["div_factor"] == 10.0
    lrs, *_ = run_schedule(schedule)
    assert lrs[0] == pytest.approx(0.04) and lrs.max() == pytest.approx(0.4)
    assert any("10-20x" in n for n in schedule["notes"])


@pytest.mark.parametrize(
    ("peak", "start"),
    [
        (0.5, 0.03),  # base_lr 0.03 is 10-20x below the peak: the cycle starts there
        (8 * PEAK, 8 * PEAK / 20),  # base_lr more than 20x below: the start is raised to peak/20
    ],
)
def test_one_cycle_peaks_at_peak_lr_and_clr_stays_at_max_lr(peak: float, start: float) -> None:
    bounds = make_result().bounds.model_copy(update={"base_lr": 0.03, "peak_lr": peak})
    result = make_result(bounds=bounds)
    one = build_schedule(result, policy="one-cycle", epochs=10)
    lrs, *_ = run_schedule(one)
    assert one["scheduler"]["kwargs"]["max_lr"] == peak and lrs.max() == pytest.approx(peak)
    assert lrs[0] == pytest.approx(start) and one["optimizer"]["kwargs"]["lr"] == pytest.approx(start)
    assert one["source"]["peak_lr"] == peak and one["source"]["bounds"] == [0.03, PEAK]
    assert any(f"peaks at peak_lr {peak:.3g}, above max_lr {PEAK:.3g}" in n for n in one["notes"])
    # a repeating cycle keeps to max_lr: it returns to its top every cycle
    tri, *_ = run_schedule(build_schedule(result, policy="triangular"))
    assert tri.max() == pytest.approx(PEAK) and tri.min() == pytest.approx(0.03)


def test_a_version_1_results_file_peaks_at_max_lr(tmp_path: Path) -> None:
    """Results written before schema version 2 have no peak_lr: they load, and one cycle peaks at max_lr."""
    data = json.loads(make_result().model_dump_json())
    data["schema_version"] = 1
    del data["bounds"]["peak_lr"]
    data["bounds"]["min_lr"] = data["bounds"].pop("base_lr")  # the names before schema version 3
    data["bounds"]["min_rationale"] = data["bounds"].pop("base_rationale")
    path = tmp_path / "range_test.json"
    path.write_text(json.dumps(data))
    schedule = build_schedule(load_results(path), policy="one-cycle", epochs=10)
    assert schedule["scheduler"]["kwargs"]["max_lr"] == PEAK and "peak_lr" not in schedule["source"]
    assert not any("peak_lr" in n for n in schedule["notes"])


def test_peak_lr_and_the_whole_cost_round_trip_through_the_results_file(tmp_path: Path) -> None:
    bounds = make_result().bounds.model_copy(update={"peak_lr": 0.5, "peak_ceiling_lr": 0.9})
    result = make_result(bounds=bounds)
    timing = result.timing.model_copy(update={"total_steps": 612, "total_seconds": 3.5})
    path = result.model_copy(update={"timing": timing}).save(tmp_path / "range_test.json")
    loaded = load_results(path)
    assert loaded.schema_version == SCHEMA_VERSION == 9 and loaded.bounds.peak_lr == 0.5
    assert loaded.bounds.peak_ceiling_lr == 0.9
    assert (loaded.timing.total_steps, loaded.timing.total_seconds) == (612, 3.5)
    assert (
        f"cost: 612 optimizer steps in 3.5 s in all (the curve's {loaded.steps_run}, "
        f"{612 - loaded.steps_run} off the curve, in other ranges or past its end)"
    ) in loaded.summary()


def test_a_version_7_file_loads_without_the_whole_cost(tmp_path: Path) -> None:
    """Schema version 8 added `timing.total_steps` and `timing.total_seconds` (reruns and self-check included)."""
    data = {**json.loads(make_result().model_dump_json()), "schema_version": 7}
    del data["timing"]["total_steps"], data["timing"]["total_seconds"]
    path = tmp_path / "range_test.json"
    path.write_text(json.dumps(data))
    loaded = load_results(path)
    assert loaded.schema_version == SCHEMA_VERSION and loaded.timing.total_steps is None
    assert "cost:" not in loaded.summary()


def test_a_version_6_file_loads_without_a_peak_ceiling(tmp_path: Path) -> None:
    """Schema version 7 added `bounds.peak_ceiling_lr` (an adaptive optimizer's peak may go up to it)."""
    data = {**json.loads(make_result().model_dump_json()), "schema_version": 6}
    del data["bounds"]["peak_ceiling_lr"]
    path = tmp_path / "range_test.json"
    path.write_text(json.dumps(data))
    loaded = load_results(path)
    assert loaded.schema_version == SCHEMA_VERSION and loaded.bounds.peak_ceiling_lr is None


def test_a_version_4_file_with_a_self_check_loads_without_a_hold(tmp_path: Path) -> None:
    """Schema version 5 added `verification.hold`; a version 4 file's self-check has none and still loads."""
    check = {"trials": [{"peak": PEAK, "steps": 75, "final_loss": 0.3, "stop_reason": "completed"}], "steps": 75,
             "checked_peak": PEAK, "peak_lr": PEAK, "outcome": "one-cycle peak kept"}  # fmt: skip
    data = {**json.loads(make_result().model_dump_json()), "schema_version": 4, "verification": check}
    path = tmp_path / "range_test.json"
    path.write_text(json.dumps(data))
    loaded = load_results(path)
    assert loaded.schema_version == SCHEMA_VERSION and loaded.verification is not None
    assert loaded.verification.hold is None and loaded.verification.trials[0].final_loss == 0.3


def test_a_version_2_file_reads_in_version_3_names(tmp_path: Path) -> None:
    """Before schema version 3 the suggested lower bound was `min_lr`, like the ladder's start: it is migrated in
    the bounds, in every run's bounds and in the spread; the old attribute names still read, with a warning."""
    result = make_result()
    data = json.loads(result.model_dump_json())
    old = {**data["bounds"], "min_lr": BASE, "min_rationale": "starts falling at 0.012"}
    del old["base_lr"], old["base_rationale"]
    spread = {"median": BASE, "q1": BASE, "q3": BASE, "min": BASE, "max": BASE, "n": 2}
    run = {"seed": 0, "lrs": data["lrs"], "losses": data["losses"], "smoothed": data["smoothed"],
           "stop_reason": "completed", "bounds": old}  # fmt: skip
    data.update(schema_version=2, bounds=old, runs=[run], spread={"min_lr": spread})
    path = tmp_path / "range_test.json"
    path.write_text(json.dumps(data))
    loaded = load_results(path)
    assert loaded.schema_version == SCHEMA_VERSION and loaded.bounds == result.bounds
    assert loaded.runs is not None and loaded.runs[0].bounds == result.bounds
    assert loaded.spread is not None and set(loaded.spread) == {"base_lr"}
    with pytest.warns(DeprecationWarning, match="base_lr"):
        assert loaded.bounds.min_lr == BASE
    with pytest.warns(DeprecationWarning, match="base_rationale"):
        assert loaded.bounds.min_rationale == "starts falling at 0.012"


# -- training length -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epochs", "spe", "cycles", "step"),
    [
        (40, 100, 5, 400),  # 4-epoch steps fit exactly
        (30, 10, 4, 37),  # 4 cycles, 4 steps left over
        (12, 10, 3, 20),  # 3 cycles of 2-epoch steps: the shortest budget for 3 cycles
        (10, 10, 2, 25),  # too short for 3 cycles: fewer cycles, steps stay >= 2 epochs
        (3, 10, 1, 15),  # shorter than one 2-epoch cycle: one cycle fills it
        (1, 2, 1, 1),  # the smallest cycle there is
        (400, 5, 50, 20),
        (1000, 1, 125, 4),
    ],
)
def test_epochs_fitting(epochs: int, spe: int, cycles: int, step: int) -> None:
    schedule = build_schedule(make_result(), policy="triangular", epochs=epochs, steps_per_epoch=spe)
    training = schedule["training"]
    assert (training["cycles"], schedule["scheduler"]["kwargs"]["step_size_up"]) == (cycles, step)
    assert training["total_steps"] == 2 * cycles * step <= epochs * spe
    assert training["epochs"] == epochs and training["steps_per_epoch"] == spe


def test_epochs_fitting_rules_hold_for_every_length() -> None:
    for spe in (1, 3, 7, 50):
        for epochs in range(math.ceil(2 / spe), 201):  # from the shortest budget with a whole cycle
            schedule = build_schedule(make_result(), epochs=epochs, steps_per_epoch=spe, policy="cosine")
            training, t0 = schedule["training"], schedule["scheduler"]["kwargs"]["T_0"]
            cycles, total = training["cycles"], training["total_steps"]
            assert total == cycles * t0 <= epochs * spe and t0 >= 2
            assert epochs * spe - total < 2 * cycles  # only the remainder of the division is left unused
            if epochs >= 12:
                assert cycles >= 3 and 2 * spe <= t0 / 2 <= 10 * spe
            elif epochs >= 4:
                assert t0 / 2 >= 2 * spe


def test_default_length_without_epochs() -> None:
    schedule = build_schedule(make_result(steps_per_epoch=25), policy="triangular2")
    assert schedule["scheduler"]["kwargs"]["step_size_up"] == 100
    assert schedule["training"] == {"steps_per_epoch": 25, "epochs": 32, "total_steps": 800, "cycles": 4}


def test_steps_per_epoch_override() -> None:
    schedule = build_schedule(make_result(steps_per_epoch=None), steps_per_epoch=7)
    assert schedule["scheduler"]["kwargs"]["step_size_up"] == 28


# -- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result_kw", "build_kw", "needles"),
    [
        ({"bounds": None}, {}, ["no bounds"]),
        (
            {"bounds": Bounds(reason="the loss is flat", next_step="widen the range: --max-lr 10")},
            {},
            ["the loss is flat", "--max-lr 10"],
        ),
        ({}, {"policy": "sawtooth"}, ["'sawtooth'", *POLICIES]),
        ({}, {"epochs": 0}, ["epochs", "0"]),
        ({}, {"epochs": -3}, ["epochs", "-3"]),
        ({}, {"steps_per_epoch": 0}, ["steps_per_epoch", "--steps-per-epoch"]),
        ({"steps_per_epoch": None}, {}, ["steps per epoch unknown", "--steps-per-epoch N"]),
        (
            {},
            {"epochs": 1, "steps_per_epoch": 1},
            ["1 epoch x 1 step = 1 optimizer step is too short", "--epochs"],
        ),
        (
            {},
            {"policy": "triangular", "epochs": 1, "steps_per_epoch": 1},
            ["1 epoch x 1 step = 1 optimizer step, too short for one cycle", "--epochs"],
        ),
        ({}, {"policy": "one-cycle"}, ["one-cycle needs the training length", "--epochs N"]),
        (
            {},
            {"policy": "one-cycle", "epochs": 1, "steps_per_epoch": 5},
            ["1 epoch x 5 steps = 5 optimizer steps is too short for one-cycle"],
        ),
        ({"optimizer": None}, {}, ["optimizer", "re-run"]),
    ],
)
def test_build_errors(result_kw: dict[str, Any], build_kw: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(ExportError) as info:
        build_schedule(make_result(**result_kw), **build_kw)
    text = str(info.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text


def test_unknown_format() -> None:
    with pytest.raises(ExportError, match=r"unknown format 'toml'.*yaml, json, python"):
        render_schedule(build_schedule(make_result()), "toml")


# -- formats -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_yaml_and_json_round_trip(policy: str) -> None:
    schedule = build_schedule(
        make_result(optimizer="adamw"), policy=policy, epochs=24, results_path="run/range_test.json"
    )
    text = render_schedule(schedule, "yaml")
    assert yaml.safe_load(text) == schedule
    assert json.loads(render_schedule(schedule, "json")) == schedule
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[0].startswith("# LR schedule written by clrfind 0.1.0") and "0.012 - 0.41" in header[0]
    assert "load_schedule" in "\n".join(header) and all(len(line) <= 110 for line in text.splitlines())
    assert "  interval: step  # call scheduler.step() after every optimizer.step()" in text
    assert schedule["source"]["results"] == "run/range_test.json"
    assert schedule["source"]["bounds"] == [BASE, PEAK]


@pytest.mark.parametrize("policy", POLICIES)
def test_python_snippet_compiles_and_runs(policy: str) -> None:
    schedule = build_schedule(make_result(), policy=policy, epochs=20)
    code = render_schedule(schedule, "python")
    compiled = compile(code, "schedule.py", "exec")
    assert "`model` is a placeholder" in code
    namespace: dict[str, Any] = {"model": torch.nn.Linear(2, 1)}
    exec(compiled, namespace)
    scheduler = namespace["scheduler"]
    assert type(scheduler).__name__ == schedule["scheduler"]["target"].rsplit(".", 1)[-1]
    assert namespace["TOTAL_STEPS"] == schedule["training"]["total_steps"]
    # cosine starts at its top; one cycle (auto, with epochs) 20x below it, base_lr being 34x below
    start = {"cosine": PEAK, "one-cycle": PEAK / 20, "auto": PEAK / 20}.get(policy, BASE)
    assert namespace["optimizer"].param_groups[0]["lr"] == pytest.approx(start)


# -- load_schedule / verify / write --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_load_schedule_builds_on_the_callers_optimizer(tmp_path: Path, fmt: str) -> None:
    path = write_schedule(make_result(), tmp_path / f"schedule.{fmt}", fmt=fmt, verify=True)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0, momentum=0.9)
    scheduler = load_schedule(path, optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CyclicLR)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(BASE)
    for _ in range(4 * SPE):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(PEAK)


def test_load_schedule_resets_a_stale_initial_lr(tmp_path: Path) -> None:
    path = write_schedule(make_result(), tmp_path / "schedule.yaml", policy="cosine")
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0, momentum=0.9)
    torch.optim.lr_scheduler.StepLR(optimizer, 10)  # leaves initial_lr = 1.0 in the param groups
    scheduler = load_schedule(path, optimizer)
    assert scheduler.base_lrs == [PEAK]


def test_load_schedule_refuses_to_turn_momentum_on(tmp_path: Path) -> None:
    path = write_schedule(
        make_result(), tmp_path / "schedule.yaml", policy="one-cycle", epochs=10
    )  # cycles momentum
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(ExportError, match=r"momentum 0.*cycle_momentum: false"):
        load_schedule(path, optimizer)
    assert optimizer.param_groups[0]["momentum"] == 0 and optimizer.param_groups[0]["lr"] == 0.1


class _MySGD(torch.optim.SGD):
    """A user's subclass of the optimizer the test measured: its bounds still apply."""


@pytest.mark.parametrize(
    ("measured", "given", "needles"),
    [
        (
            "sgd-momentum",
            lambda p: torch.optim.Adam(p),
            ["measured SGD", "is Adam", "10-100x lower than SGD's"],
        ),
        ("adam", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), ["measured Adam", "10-100x higher"]),
        ("adamw", lambda p: torch.optim.Adam(p), ["measured AdamW", "is Adam", "a guess for another"]),
        ("sgd-momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), None),
        ("sgd-plain", lambda p: _MySGD(p, lr=0.1, momentum=0.9), None),
    ],
)
def test_load_schedule_warns_when_the_optimizer_is_not_the_measured_one(
    tmp_path: Path, measured: str, given: Any, needles: list[str] | None
) -> None:
    """An Adam given SGD's bounds (or the reverse) is warned about, with why; the same class or a subclass is not."""
    from clrfind import ClrfindWarning  # public, so a caller can filter it or make it an error

    schedule = build_schedule(make_result(optimizer=measured))
    schedule["scheduler"]["kwargs"]["cycle_momentum"] = False  # the optimizers here need not have momentum
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump(schedule))
    optimizer = given(torch.nn.Linear(2, 1).parameters())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scheduler = load_schedule(path, optimizer)
    ours = [w for w in caught if issubclass(w.category, ClrfindWarning)]
    assert isinstance(scheduler, torch.optim.lr_scheduler.CyclicLR)
    if needles is None:
        assert ours == []
        return
    assert len(ours) == 1 and ours[0].filename == __file__  # points at the caller's line
    message = str(ours[0].message)
    assert message.startswith(f"{path}: ") and "bounds may not transfer" in message
    assert all(n in message for n in needles), message


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("missing.yaml", None, "no such schedule file"),
        ("bad.yaml", "optimizer: [unclosed\n", "not valid YAML"),
        ("bad.json", "{", "not valid JSON at line 1"),
        ("list.yaml", "- 1\n", "expected a mapping"),
        (
            "noopt.yaml",
            "scheduler: {target: torch.optim.lr_scheduler.CyclicLR, kwargs: {}}\n",
            "key 'optimizer'",
        ),
        ("schedule.py", "import torch\n", "Python snippet"),
    ],
)
def test_load_schedule_file_errors(tmp_path: Path, name: str, content: str | None, needle: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ExportError, match=needle):
        load_schedule(path, optimizer)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda s: s["scheduler"]["kwargs"].update(bogus=1), "do not fit CyclicLR"),
        (lambda s: s["scheduler"].update(target="torch.optim.lr_scheduler.Nope"), "not a scheduler"),
        (lambda s: s["scheduler"].update(target="os.system"), "not a torch.optim.lr_scheduler class"),
        (lambda s: s["optimizer"]["kwargs"].update(lr=-1), "positive number"),
    ],
)
def test_load_schedule_bad_contents(tmp_path: Path, edit: Any, needle: str) -> None:
    schedule = build_schedule(make_result())
    edit(schedule)
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump(schedule))
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ExportError, match=needle):
        load_schedule(path, optimizer)


def test_verify_reports_unimportable_or_rejecting_optimizers() -> None:
    schedule = build_schedule(make_result())
    schedule["optimizer"]["target"] = "no_such_package.optim.Fancy"
    with pytest.raises(ExportError, match=r"is not a torch\.optim class.*--trust-results"):
        verify_schedule(schedule)  # a results file is data: nothing outside torch.optim is imported
    with pytest.raises(ExportError, match=r"cannot import the optimizer .*--no-verify"):
        verify_schedule(schedule, trust=True)
    schedule = build_schedule(make_result())
    schedule["optimizer"]["kwargs"]["momentum"] = -1.0
    with pytest.raises(ExportError, match=r"rejects optimizer\.kwargs"):
        verify_schedule(schedule)


def test_write_schedule_writes_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out" / "schedule.yaml"
    target.parent.mkdir()
    target.write_text("old")
    path = write_schedule(make_result(), target, policy="exp_range", verify=True)
    assert path == target and yaml.safe_load(path.read_text())["scheduler"]["kwargs"]["mode"] == "exp_range"
    assert sorted(p.name for p in target.parent.iterdir()) == ["schedule.yaml"]


def test_build_and_render_never_import_torch() -> None:
    result = make_result()
    code = (
        "import sys\n"
        "from clrfind.export import POLICIES, FORMATS, build_schedule, render_schedule\n"
        "from clrfind.results import RangeTestResult\n"
        "r = RangeTestResult.model_validate_json(sys.stdin.read())\n"
        "texts = [render_schedule(build_schedule(r, policy=p, epochs=20), f)\n"
        "         for p in POLICIES for f in FORMATS]\n"
        "print(len(texts), 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=result.model_dump_json(),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert out.stdout.split() == [str(len(POLICIES) * 3), "False"]


def test_cycle_arithmetic_matches_the_paper_formula() -> None:
    """CyclicLR's triangular LR is Smith's formula: lr = base + (max - base) * max(0, 1 - x)."""
    schedule = build_schedule(make_result(), policy="triangular", epochs=16, steps_per_epoch=3)
    lrs, *_ = run_schedule(schedule)
    s = schedule["scheduler"]["kwargs"]["step_size_up"]
    for it, lr in enumerate(lrs):
        cycle = math.floor(1 + it / (2 * s))
        x = abs(it / s - 2 * cycle + 1)
        assert lr == pytest.approx(BASE + (PEAK - BASE) * max(0.0, 1 - x))


def test_the_range_tests_training_length_is_the_exports_default() -> None:
    # Told a 300-step training and given no length of its own, the test runs 300 steps.
    length = TrainingLength(epochs=12, steps_per_epoch=25)
    told = make_result().model_copy(update={"training": length, "planned_steps": 300})
    schedule = build_schedule(told)
    assert schedule["scheduler"]["target"] == "torch.optim.lr_scheduler.OneCycleLR"
    assert schedule["training"] == {"steps_per_epoch": 25, "epochs": 12, "total_steps": 300, "cycles": 1}
    assert schedule["notes"][0] == "training length the range test was told (its training): 12 epochs"
    assert "warnings" not in schedule
    # The same length given again is no news; another one trains a run the bounds were not checked for.
    assert "warnings" not in build_schedule(told, epochs=12, steps_per_epoch=25)
    other = build_schedule(told, epochs=4)
    assert other["training"]["total_steps"] == 100
    assert other["warnings"] == [
        "this schedule trains 100 optimizer steps, the range test was told its training is 300 steps "
        "(12 epochs of 25): its bounds were checked for that run; re-run the range test with training.epochs: 4 "
        "(--train-epochs 4) for this one"
    ]
    assert "warnings:" in render_schedule(other)  # the file says so too, not only the command
    assert "# warning: this schedule trains 100 optimizer steps" in render_schedule(other, "python")
    assert build_schedule(make_result())["scheduler"]["target"].endswith("CyclicLR")  # untold: as before
    # Told, but set to a third of the length it would have run: the bounds sit higher than that run's.
    short = told.model_copy(update={"planned_steps": 100})
    assert build_schedule(short)["warnings"] == [
        "a test of 100 steps is under half the 300 clrfind runs for the 300-step training: a shorter test shows "
        "the loss's fall, and so the bounds, at higher LRs (the loss needs steps to move); re-run the range test "
        "without a length of its own"
    ]
    assert "warnings" not in build_schedule(short.model_copy(update={"planned_steps": 150}))


@pytest.mark.parametrize(
    ("planned", "epochs", "warned"),
    [
        (300, 9, None),  # 9 x 25 = 225 steps: told, the test would run the same 300
        # a 150-step test of its own: a 100-step run is under twice as long, and 300 not twice 150
        (150, 4, None),
        (60, 4, "short"),  # the same run, a 60-step test: under half the 300 it would run told
        (60, 5, "longer"),  # 125 steps: told, a 300-step test
        (300, 23, None),  # 575 steps: told, a 575-step test, under twice the 300 that ran
        (300, 24, "longer"),  # 600 steps: told, twice as long
        (300, 200, "longer"),  # told, the longest test (1000 steps)
        (600, 200, None),  # a test of 600 steps of its own: told, 1000 is not twice as long
    ],
)
def test_an_untold_test_warns_when_the_schedule_trains_a_run_it_would_rehearse_longer(
    planned: int, epochs: int, warned: str | None
) -> None:
    """Untold, the test and its trials rehearse their own few hundred steps; told a run of twice that or more, they
    would rehearse a longer run (a quarter of it per trial), which trained better on the benchmark's long runs. A
    test under half the length clrfind would run is too short for the run, however long."""
    trials = [Trial(peak=PEAK, steps=planned // 4, final_loss=0.5, stop_reason="completed")]
    check = Verification(trials=trials, steps=planned, checked_peak=PEAK, peak_lr=PEAK, outcome="kept")
    result = make_result().model_copy(update={"planned_steps": planned, "verification": check})
    schedule = build_schedule(result, epochs=epochs, steps_per_epoch=25)
    if warned is None:
        assert "warnings" not in schedule
        return
    total = epochs * 25
    if warned == "short":
        assert schedule["warnings"] == [
            f"a test of {planned} steps is under half the 300 clrfind runs for the {total}-step training: a "
            "shorter test shows the loss's fall, and so the bounds, at higher LRs (the loss needs steps to move); "
            "re-run the range test without a length of its own"
        ]
        return
    assert schedule["warnings"] == [
        f"this schedule trains {total} optimizer steps, and the range test was not told its training: its "
        f"{planned}-step test and its self-check's trials of {planned // 4} steps rehearsed a shorter run; re-run "
        f"the range test with training.epochs: {epochs} (--train-epochs {epochs}) and no steps of its own: the test "
        f"then lasts {min(max(total, 300), 1000)} steps, each trial a quarter of them"
    ]
    # Without a length of the user's, the schedule's own (4 cycles) is no run to warn about.
    assert "warnings" not in build_schedule(result, steps_per_epoch=25)
    # A scheduler built without a file (the Lightning and Hugging Face integrations) warns the same.
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    with pytest.warns(ClrfindWarning, match="not told its training"):
        scheduler_for(result, optimizer, epochs=epochs, steps_per_epoch=25)


def test_a_version_8_file_loads_without_a_training_length(tmp_path: Path) -> None:
    """Schema version 9 added `training`, the length of the training the bounds are for."""
    data = {**json.loads(make_result().model_dump_json()), "schema_version": 8}
    del data["training"]
    path = tmp_path / "range_test.json"
    path.write_text(json.dumps(data))
    loaded = load_results(path)
    assert loaded.schema_version == SCHEMA_VERSION and loaded.training is None
    assert "for a training of" not in loaded.summary()
    told = make_result().model_copy(update={"training": TrainingLength(epochs=3, steps_per_epoch=10)})
    again = load_results(told.save(tmp_path / "told.json"))
    assert again.training == told.training
    assert (
        "for a training of 3 epochs x 10 steps = 30 steps (the exported schedule's length)" in again.summary()
    )
