"""A test whose loss stayed flat to the end of its range, with nothing diverging, is run again up to a 10x higher
end (twice at most), from the initial state: its own next step, taken instead of returning no bounds."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import clrfind
from clrfind.analysis import bounds_for
from clrfind.api import Rerun, run_spec
from clrfind.cli import app
from clrfind.results import load_results
from clrfind.spec import load_spec

if TYPE_CHECKING:
    from click.testing import Result

    from clrfind.api import Trainer
    from clrfind.engine import EngineOutput
    from clrfind.results import Bounds, RangeTestResult
    from clrfind.settings import RunSettings

# Inputs 300x smaller than usual and no bias: under plain SGD a linear classifier's loss does not move below lr ~10.
TINY_INPUTS_PY = """
import torch
from torch.utils.data import TensorDataset


def tiny_inputs(n=512):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g) * 0.003
    y = (x @ torch.randn(8, 2, generator=g)).argmax(1)
    return TensorDataset(x, y)


def random_labels(n=512):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 8, generator=g) * 0.1, torch.randint(0, 2, (n,), generator=g))


def linear():
    return torch.nn.Linear(8, 2, bias=False)
"""


def _flat_task(data: str = "tiny_inputs"):
    """(model, loader, optimizer): TINY_INPUTS_PY's linear classifier on its `data` (tiny inputs, random labels)."""
    ns: dict = {}
    exec(TINY_INPUTS_PY, ns)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        ns[data](), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    model = ns["linear"]()
    return model, loader, torch.optim.SGD(model.parameters(), lr=0.1)


def _range_test(model, loader, optimizer, **kwargs) -> clrfind.RangeTestResult:
    """The test every case here runs: 1e-5 -> 1 over 100 steps, cross-entropy, no bar."""
    return clrfind.range_test(
        model, loader, torch.nn.CrossEntropyLoss(), optimizer, min_lr=1e-5, max_lr=1.0, steps=100,
        progress=False, **kwargs,
    )  # fmt: skip


def test_a_flat_completed_curve_names_a_10x_wider_end_and_a_stopped_or_diverged_one_does_not() -> None:
    lrs = np.geomspace(1e-5, 1.0, 200)
    flat = 1.0 + 0.01 * np.random.default_rng(0).standard_normal(200)
    b = bounds_for(lrs, flat, mode="exp", stop_reason="completed", max_lr=1.0, metric=None)
    assert not b.usable and b.wider_max_lr == pytest.approx(10.0) and "--max-lr 10" in b.next_step
    assert (
        bounds_for(lrs, flat, mode="exp", stop_reason="interrupted", max_lr=1.0, metric=None).wider_max_lr
        is None
    )
    diverged = np.concatenate([flat[:150], np.full(50, np.nan)])
    assert (
        bounds_for(lrs, diverged, mode="exp", stop_reason="diverged", max_lr=1.0, metric=None).wider_max_lr
        is None
    )
    rising = np.concatenate([flat[:100], 1.0 + np.linspace(0.0, 3.0, 100)])  # nothing to learn, then worse
    assert (
        bounds_for(lrs, rising, mode="exp", stop_reason="completed", max_lr=1.0, metric=None).wider_max_lr
        is None
    )


def test_a_curve_still_falling_at_the_end_of_a_completed_range_names_a_10x_wider_end_too() -> None:
    """It never reached where the loss stops falling, the test's one purpose: the range ended too low. A curve that
    stopped falling before the end, or one that was stopped early, does not name one."""
    lrs = np.geomspace(1e-5, 1.0, 200)
    noise = 0.01 * np.random.default_rng(0).standard_normal(200)
    falling = 2.0 - 1.5 / (1.0 + np.exp(-(np.log10(lrs) + 1.0) * 3.0)) + noise  # still steep at lr 1
    b = bounds_for(lrs, falling, mode="exp", stop_reason="completed", max_lr=1.0, metric=None)
    assert b.usable and b.wider_max_lr == pytest.approx(10.0) and "still falling" in b.reason
    stopped = bounds_for(lrs, falling, mode="exp", stop_reason="interrupted", max_lr=1.0, metric=None)
    assert stopped.wider_max_lr is None
    levelled = 2.0 - 1.5 / (1.0 + np.exp(-(np.log10(lrs) + 3.0) * 3.0)) + noise  # level from lr ~1e-2 on
    ends = bounds_for(lrs, levelled, mode="exp", stop_reason="completed", max_lr=1.0, metric=None)
    assert ends.usable and ends.wider_max_lr is None


def test_the_library_runs_a_flat_test_again_up_to_100x_and_restores_the_state() -> None:
    model, loader, optimizer = _flat_task()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = _range_test(model, loader, optimizer)
    assert result.max_lr == pytest.approx(100.0)  # flat to 1, then to 10: run again twice
    assert result.lrs[-1] == pytest.approx(100.0) and len(result.lrs) == 100
    widened = [n for n in result.notes if "the range ended too low" in n]
    assert len(widened) == 2 and "up to 10" in widened[0] and "1e+02" in widened[1]
    assert result.bounds.usable and result.bounds.max_lr > 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Without the self-check and with restore=False there is no initial state to start again from: no rerun.
    model, loader, optimizer = _flat_task()
    kept = _range_test(model, loader, optimizer, restore=False, verify_bounds=False)
    assert kept.max_lr == 1.0 and not kept.bounds.usable and kept.bounds.wider_max_lr == pytest.approx(10.0)


def cli_range_test(tmp_path: Path, data: str) -> tuple[Result, RangeTestResult]:
    """`clrfind range-test` on a spec of TINY_INPUTS_PY's linear classifier and its `data`, 1e-5 -> 1 over 100
    steps: (the CLI's result, the saved results)."""
    (tmp_path / "tiny.py").write_text(TINY_INPUTS_PY)
    spec = tmp_path / "flat.yaml"
    spec.write_text(
        "model: {target: tiny.py:linear}\n"
        f"data: {{train: {{target: tiny.py:{data}}}, batch_size: 32}}\n"
        "loss: {target: torch.nn.CrossEntropyLoss}\n"
        "optimizer: {target: torch.optim.SGD}\n"
        "range_test: {min_lr: 1.0e-5, max_lr: 1.0, steps: 100}\n"
        "device: cpu\n"
    )
    res = CliRunner().invoke(app, ["range-test", str(spec), "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.stderr
    return res, load_results(tmp_path / "out")


def test_the_cli_runs_a_flat_spec_again_and_saves_the_wider_run(tmp_path) -> None:
    res, saved = cli_range_test(tmp_path, "tiny_inputs")
    assert saved.max_lr == pytest.approx(100.0) and saved.bounds.usable
    assert "the range ended too low" in res.stdout


def test_a_test_still_flat_after_widening_and_lengthening_says_what_to_check() -> None:
    """Random labels: nothing to learn at any LR. After two wider reruns and one 3x longer one (`test_lengthen.py`)
    the advice is about the setup, not the range, and the caller's model is as it was."""
    model, loader, optimizer = _flat_task("random_labels")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = _range_test(model, loader, optimizer)
    assert result.max_lr == pytest.approx(100.0) and not result.bounds.usable and result.planned_steps == 300
    assert result.bounds.next_step.startswith(
        "no fall of the loss from lr 1e-05 to 1e+02 in 100 or 300 steps"
    )
    assert "learns this data at all" in result.bounds.next_step and "--steps 900" in result.bounds.next_step
    reruns = [n for n in result.notes if "the test was run again from the initial state" in n]
    assert len(reruns) == 3 and reruns[-1].endswith("with 300 steps")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_cli_lengthens_a_spec_whose_loss_never_falls_and_saves_the_longer_run(tmp_path) -> None:
    """Random labels: flat up to 1, then to 10 and 100 (the wider reruns), then once more with 3x the steps; the
    saved results are that run's, and the summary says each rerun."""
    res, saved = cli_range_test(tmp_path, "random_labels")
    assert saved.planned_steps == 300 and saved.max_lr == pytest.approx(100.0) and not saved.bounds.usable
    assert "the test was run again from the initial state with 300 steps" in res.stdout
    assert "in 100 or 300 steps" in res.stdout and "--steps 900" in res.stdout


def test_the_advice_after_widening_names_the_curve_the_bounds_are_read_from(tmp_path: Path) -> None:
    """Read from validation accuracy, the curve that showed nothing is the accuracy's, and it should have risen.

    The bundled CNN sample on a linear ladder, its images and labels replaced by noise: no LR makes the accuracy
    rise, the test runs again up to 20 and longer, and still nothing. (On the real shapes, whether the widened run
    finds a rise depends on how the CPU's kernels round: on an Intel Xeon it diverges at 7.4 and the self-check
    finds a peak.)"""
    samples = Path(__file__).parents[1] / "sample_configs"
    (tmp_path / "models.py").write_text((samples / "models.py").read_text())
    (tmp_path / "data.py").write_text(
        "import torch\n\n\ndef shapes(n, seed):\n"
        "    g = torch.Generator().manual_seed(seed)\n"
        "    x, y = torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 4, (n,), generator=g)\n"
        "    return torch.utils.data.TensorDataset(x, y)\n"
    )
    spec = (samples / "cnn_shapes.yaml").read_text()
    (tmp_path / "spec.yaml").write_text(
        re.sub(r"(?m)^  mode: auto.*\n(^ {21}#.*\n)?", "  mode: linear\n", spec)
    )
    result = run_spec(load_spec(tmp_path / "spec.yaml"), out_dir=tmp_path / "out", write=False).result
    assert not result.bounds.usable and result.max_lr == pytest.approx(20.0)
    assert result.bounds.next_step.startswith(
        "no rise of the accuracy from lr 0.001 to 20 in 160 or 480 steps"
    )


def test_adadelta_whose_loss_still_falls_at_lr_1_is_run_again_until_its_fall_ends() -> None:
    """Adadelta's own LR is 1.0, the end of the default range: there its loss is still falling, so the test runs
    again up to 10 (and 100) instead of suggesting the range's end as max_lr."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    data = torch.utils.data.TensorDataset(x, (x @ torch.randn(8, 3, generator=g)).argmax(1))
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    result = _range_test(model, loader, torch.optim.Adadelta(model.parameters()))
    reruns = [n for n in result.notes if "the range ended too low" in n]
    assert reruns and reruns[0].startswith("the loss was still improving at lr 1 with nothing diverging")
    assert result.max_lr >= 10.0 and result.bounds.usable and result.bounds.max_lr > 1.0
    assert result.bounds.wider_max_lr is None  # the last run found where the fall ends


def _scripted_widen(
    settings: RunSettings, first: EngineOutput, run: Callable[[np.ndarray], EngineOutput]
) -> tuple[RangeTestResult, EngineOutput, Trainer]:
    """`Trainer.widen` on a scripted first run (`first`, an EngineOutput) and scripted reruns (`run(lrs)`), with the
    library's analysis: (result, output) as the range test would keep them."""
    import functools

    from clrfind.api import Trainer, make_result
    from clrfind.faults import library_terms

    class Initial:
        def restore(self) -> None: ...

    model = torch.nn.Linear(1, 1)
    trainer = Trainer(model, [], torch.nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                      device=torch.device("cpu"), settings=settings)  # fmt: skip
    analyse = functools.partial(
        make_result, terms=library_terms(step_fn=False), planned_steps=settings.steps, device="cpu"
    )
    result, out = trainer.widen(
        analyse(first, settings), first, Rerun(Initial(), settings.steps, run, analyse, lambda: None)
    )
    return result, out, trainer


def test_a_wider_rerun_that_shows_no_clear_fall_keeps_the_first_runs_bounds() -> None:
    """Spread over one more decade, a noisy fall can sink into its noise; the rerun then does not undo the fall the
    first run showed: its bounds stand, the rerun is said, and the next step is a longer test, not the same rerun."""
    from clrfind.engine import EngineOutput
    from clrfind.settings import RunSettings

    rng = np.random.default_rng(0)
    settings = RunSettings(min_lr=1e-5, max_lr=1.0, steps=200, mode="exp")

    def output(lrs: np.ndarray, losses: np.ndarray) -> EngineOutput:
        return EngineOutput(lrs, losses, "completed", "ran all steps", None, 0, 0.0)

    lrs = settings.ladder(200)
    falling = 2.0 - 1.5 / (1.0 + np.exp(-(np.log10(lrs) + 1.0) * 3.0)) + 0.01 * rng.standard_normal(200)
    reruns: list[float] = []

    def run(wider: np.ndarray) -> EngineOutput:  # the wider run: nothing but noise
        reruns.append(float(wider[-1]))
        return output(wider, 2.0 + 0.3 * rng.standard_normal(wider.size))

    first = output(lrs, falling)
    result, out, trainer = _scripted_widen(settings, first, run)
    assert reruns == [pytest.approx(10.0)] and out is first and trainer.settings.max_lr == 1.0
    assert (
        result.bounds.usable
        and result.bounds.max_lr == pytest.approx(1.0)
        and result.bounds.wider_max_lr is None
    )
    assert result.notes[-1].startswith("the loss was still improving at lr 1 with nothing diverging")
    assert "where no fall was clear" in result.notes[-1]
    assert (
        "--max-lr 10 --steps 400" in result.bounds.next_step
        and "widen the range" not in result.bounds.next_step
    )


def _same_numbers(a: Bounds, b: Bounds) -> bool:
    return (a.base_lr, a.max_lr, a.peak_lr, a.confidence) == (b.base_lr, b.max_lr, b.peak_lr, b.confidence)


def _levelled_run(settings: RunSettings) -> tuple[RangeTestResult, EngineOutput, Trainer, Callable]:
    """A first run whose loss falls, then stays level to the end of 1e-5..1 with nothing diverging (one cycle
    peaks at half the end), checked by a stand-in self-check that kept that peak: (checked result, its output, the
    trainer, the analysis)."""
    import functools

    from clrfind.api import Trainer, make_result
    from clrfind.engine import EngineOutput
    from clrfind.faults import library_terms
    from clrfind.results import Verification

    lrs = settings.ladder(settings.steps)
    noise = 0.01 * np.random.default_rng(0).standard_normal(lrs.size)
    levelled = 2.0 - 1.5 / (1.0 + np.exp(-(np.log10(lrs) + 3.0) * 3.0)) + noise
    out = EngineOutput(lrs, levelled, "completed", "ran all steps", None, 0, 0.0)
    model = torch.nn.Linear(1, 1)
    trainer = Trainer(model, [], torch.nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                      device=torch.device("cpu"), settings=settings)  # fmt: skip
    analyse = functools.partial(
        make_result, terms=library_terms(step_fn=False), planned_steps=settings.steps, device="cpu"
    )
    unchecked = analyse(out, settings)
    b = unchecked.bounds
    assert b.usable and b.divergence_lr is None and b.peak_lr == pytest.approx(0.5) and b.max_lr < 0.1
    kept = Verification(trials=[], steps=0, checked_peak=0.5, peak_lr=0.5, outcome="one-cycle peak 0.5 kept")
    return unchecked.model_copy(update={"verification": kept}), out, trainer, analyse


@pytest.mark.parametrize(("diverges_at", "ceiling"), [(6.0, 3.0), (None, 5.0), (0.9, None)])
def test_a_peak_kept_at_the_ceiling_the_ranges_end_set_is_checked_again_up_to_the_wider_runs(
    diverges_at: float | None, ceiling: float | None
) -> None:
    """The self-check kept the peak at half the range's end, where nothing diverged: the range capped it, not the
    task. A test up to a 10x higher end finds where the loss diverges (or that nothing does), and the first run's
    bounds are checked again up to half of that; a ceiling no higher than the kept peak leaves the result as it
    was. The result keeps the first run's curve and knee either way."""
    from clrfind.engine import EngineOutput
    from clrfind.settings import RunSettings

    settings = RunSettings(min_lr=1e-5, max_lr=1.0, steps=200, mode="exp")
    result, out, trainer, analyse = _levelled_run(settings)
    unchecked = result.model_copy(update={"verification": None})
    assert trainer.wants_wider_peak(result, out, object())
    wider_ends: list[float] = []
    checked: list[RangeTestResult] = []

    def run(lrs: np.ndarray) -> EngineOutput:
        wider_ends.append(float(lrs[-1]))
        losses = np.full(lrs.size, 0.5)
        if diverges_at is not None:
            losses[lrs >= diverges_at] = np.nan
            reason = "diverged"
        return EngineOutput(lrs, losses, reason if diverges_at else "completed", "", None, 0, 0.0)

    def check(res: RangeTestResult, _: EngineOutput) -> tuple[RangeTestResult, int | None]:
        checked.append(res)
        return res, None

    class Initial:
        def restore(self) -> None: ...

    final, stopped = trainer.widen_for_peak(
        unchecked, result, out, Rerun(Initial(), 200, run, analyse, lambda: None), check=check
    )
    assert wider_ends == [pytest.approx(10.0)] and stopped is None and trainer.settings.max_lr == 1.0
    assert not trainer.wants_wider_peak(result, out, object())  # once
    assert final.lrs == result.lrs and final.bounds.max_lr == result.bounds.max_lr
    # The step the result's advice named is taken: the advice no longer names it.
    assert "to see where it diverges" in result.bounds.next_step
    assert "to see where it diverges" not in (final.bounds.next_step or "")
    if ceiling is None:
        assert not checked and final.verification == result.verification
        assert _same_numbers(final.bounds, result.bounds)
        assert final.bounds.max_rationale.endswith("a test up to 10 diverged at 0.94: the peak stands")
        assert re.search(
            r"a test up to 10, from the initial state, diverged at 0\.9\d*: the peak stands$", final.notes[-1]
        )
    else:
        assert len(checked) == 1 and final.bounds.peak_lr == pytest.approx(ceiling, rel=0.05)
        assert f"a test up to 10 {'diverged' if diverges_at else 'ran'}" in final.bounds.max_rationale
        assert "the peak's ceiling is" in final.bounds.max_rationale
        assert f"so the trials were run again up to {ceiling:g}" in final.notes[-1]
        assert final.notes[-1].startswith(
            "the self-check's best trial peaked at 0.5, the ceiling the range's end"
        )


def test_only_a_peak_at_the_ends_ceiling_with_nothing_diverged_asks_for_a_wider_run() -> None:
    from clrfind.settings import RunSettings

    settings = RunSettings(min_lr=1e-5, max_lr=1.0, steps=200, mode="exp")
    result, out, trainer, _ = _levelled_run(settings)
    check = result.verification

    def with_(peak: float | None = None, **bounds: float) -> RangeTestResult:
        v = check.model_copy(update={"peak_lr": peak}) if peak is not None else check
        return result.model_copy(
            update={"bounds": result.bounds.model_copy(update=bounds), "verification": v}
        )

    assert trainer.wants_wider_peak(with_(), out, object())
    assert not trainer.wants_wider_peak(with_(), out, None)  # no initial state to start again from
    assert not trainer.wants_wider_peak(with_(0.2), out, object())  # the trials stopped below the ceiling
    assert not trainer.wants_wider_peak(with_(result.bounds.max_lr), out, object())  # or at max_lr
    assert not trainer.wants_wider_peak(with_(divergence_lr=1.0), out, object())  # the curve set the ceiling
    assert not trainer.wants_wider_peak(result.model_copy(update={"verification": None}), out, object())


def test_find_bounds_checks_a_peak_at_the_ends_ceiling_again_after_one_wider_run(monkeypatch) -> None:
    """The whole sequence through `Trainer.find_bounds`: the first run, its self-check keeping the peak at half
    the end, one wider run (its own progress context), and a second self-check of the first run's bounds up to
    half of where the wider run diverged; the result keeps the first run's output."""
    import contextlib

    from clrfind.engine import EngineOutput
    from clrfind.results import Verification
    from clrfind.settings import RunSettings

    settings = RunSettings(min_lr=1e-5, max_lr=1.0, steps=200, mode="exp")
    first, first_out, trainer, analyse = _levelled_run(settings)
    contexts: list[int] = []
    checks: list[float] = []

    def run(lrs: np.ndarray) -> EngineOutput:
        if len(contexts) == 1:
            return first_out
        losses = np.where(lrs >= 6.0, np.nan, 0.5)
        return EngineOutput(lrs, losses, "diverged", "", None, 0, 0.0)

    @contextlib.contextmanager
    def runs(total: int):
        contexts.append(total)
        yield run

    def self_check(result, out, initial):
        checks.append(result.bounds.peak_lr)
        top = result.bounds.peak_lr
        kept = Verification(
            trials=[], steps=0, checked_peak=top, peak_lr=top, outcome=f"one-cycle peak {top} kept"
        )
        return result.model_copy(update={"verification": kept}), None

    monkeypatch.setattr(trainer, "self_check", self_check)

    class Initial:
        def restore(self) -> None: ...

    result, out, stopped = trainer.find_bounds(
        Initial(), steps=200, runs=runs, analyse=analyse, reseed=lambda: None
    )
    assert contexts == [200, 200] and stopped is None and out is first_out
    assert checks[0] == pytest.approx(0.5) and checks[1] == pytest.approx(3.0, rel=0.05) and len(checks) == 2
    assert result.bounds.max_lr == first.bounds.max_lr and result.verification.peak_lr == checks[1]


def test_a_second_check_that_ends_below_the_kept_peak_leaves_the_first_checks_result() -> None:
    """The second check's candidates are spaced from max_lr toward the new ceiling and need not include the kept
    peak: when it ends below that peak, the first check's result stands, and the notes say so."""
    from clrfind.engine import EngineOutput
    from clrfind.settings import RunSettings

    settings = RunSettings(min_lr=1e-5, max_lr=1.0, steps=200, mode="exp")
    result, out, trainer, analyse = _levelled_run(settings)

    def run(lrs: np.ndarray) -> EngineOutput:
        return EngineOutput(lrs, np.where(lrs >= 6.0, np.nan, 0.5), "diverged", "", None, 0, 0.0)

    def check(res: RangeTestResult, _: EngineOutput) -> tuple[RangeTestResult, int | None]:
        lower = result.verification.model_copy(update={"peak_lr": res.bounds.max_lr})
        return res.model_copy(update={"verification": lower}), None

    class Initial:
        def restore(self) -> None: ...

    final, stopped = trainer.widen_for_peak(
        result.model_copy(update={"verification": None}), result, out,
        Rerun(Initial(), 200, run, analyse, lambda: None), check=check,
    )  # fmt: skip
    assert stopped is None and final.verification == result.verification
    assert _same_numbers(final.bounds, result.bounds)
    assert re.search(
        r"run again up to 3\.\d*, which kept none above 0\.5 \(.*\): the peak stands$", final.notes[-1]
    )
    assert not trainer.reruns
