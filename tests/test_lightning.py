"""clrfind.lightning with the real Lightning: the callback and the function measure what a plain loop measures,
restore the module, log to the trainer's loggers, and hand the schedule to the fit."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import REPO

L = pytest.importorskip("lightning.pytorch")

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import clrfind  # noqa: E402
import clrfind.lightning  # noqa: E402
from clrfind.errors import SetupError, UsageError  # noqa: E402

SETTINGS = {"min_lr": 1e-3, "max_lr": 3.0, "steps": 60, "seed": 0}


class Classifier(L.LightningModule):
    """An MLP whose training_step logs, as Lightning modules do (the range test must ignore it)."""

    def __init__(self, result=None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
        self.result = result

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return {"loss": loss}

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        if self.result is None:
            return optimizer
        return clrfind.lightning.optimizer_config(self.result, optimizer, self.trainer)


def _loader(seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 2, generator=g)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    return DataLoader(TensorDataset(x, y), batch_size=32)  # 16 batches an epoch, in order


def _trainer(tmp_path: Path, max_epochs: int = 1, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, logger=L.loggers.CSVLogger(tmp_path),
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=1,
        **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def plain() -> clrfind.RangeTestResult:
    """The same model, data and optimizer in clrfind's own loop."""
    net = Classifier().net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    return clrfind.range_test(net, _loader(), torch.nn.functional.cross_entropy, optimizer, **SETTINGS)


def test_the_callback_measures_what_a_plain_loop_does_then_trains_with_its_schedule(tmp_path, plain) -> None:
    finder = clrfind.lightning.LRRangeTest(**SETTINGS)
    assert isinstance(finder, L.Callback)
    trainer = _trainer(tmp_path, callbacks=[finder])
    trainer.fit(Classifier(), _loader())
    assert finder.result.losses == plain.losses
    assert finder.result.bounds == plain.bounds and plain.bounds.usable
    assert finder.result.training is None  # given its own steps, the test is not sized by the fit
    # The fit then followed the suggested one cycle, stepped every optimizer step.
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert type(scheduler).__name__ == "OneCycleLR" and scheduler.last_epoch == 16
    # The trainer's logger has the curve, one row a step, and the bounds.
    metrics = (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()
    rows = [r for r in csv.DictReader(metrics) if r.get("clrfind/lr")]
    assert [float(r["clrfind/lr"]) for r in rows] == pytest.approx(plain.lrs)
    assert [float(r["clrfind/loss"]) for r in rows] == pytest.approx(plain.losses)
    assert "train_loss" in metrics[0]  # the fit's own self.log works again after the test
    hparams = (Path(trainer.logger.log_dir) / "hparams.yaml").read_text()
    assert f"clrfind/max_lr: {plain.bounds.max_lr}" in hparams and "clrfind/bounds:" in hparams
    assert plain.bounds.max_rationale.split(";")[0][:40] in hparams


def test_a_tensorboard_logger_gets_what_log_tensorboard_sends(tmp_path, plain) -> None:
    """The trainer's TensorBoardLogger receives the curve, the plot and the schedule, in the run it holds."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = _trainer(tmp_path)
    trainer.loggers = [L.loggers.TensorBoardLogger(tmp_path, name="tb")]
    result = clrfind.lightning.range_test(trainer, Classifier(), _loader(), **SETTINGS)
    log_dir = Path(trainer.loggers[0].log_dir)
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("clrfind/loss")] == pytest.approx(result.losses, rel=1e-6)
    assert events.Images("clrfind/range_test")
    from clrfind.export import build_schedule, render_schedule

    assert (log_dir / "schedule.yaml").read_text() == render_schedule(build_schedule(result))


def test_the_plot_is_rendered_only_for_a_logger_that_takes_it(tmp_path, plain, monkeypatch) -> None:
    import clrfind.plotting

    rendered, draw = [], clrfind.plotting.figure_png
    monkeypatch.setattr(clrfind.plotting, "figure_png", lambda fig: rendered.append(fig) or draw(fig))
    clrfind.lightning.log_result(plain, [L.loggers.CSVLogger(tmp_path)])
    assert rendered == []  # a CSV file cannot hold a picture: no second spent drawing one
    pytest.importorskip("tensorboard")
    clrfind.lightning.log_result(
        plain, [L.loggers.CSVLogger(tmp_path), L.loggers.TensorBoardLogger(tmp_path)]
    )
    assert len(rendered) == 1


def test_the_function_restores_the_module_and_its_result_configures_the_fit(tmp_path, plain) -> None:
    module = Classifier()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = _trainer(tmp_path)
    result = clrfind.lightning.range_test(trainer, module, _loader(), **SETTINGS)
    assert result.losses == plain.losses and result.bounds == plain.bounds
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert "log" not in vars(module)  # self.log is the module's own again
    module.result = result
    trainer.fit(module, _loader())
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 16 and scheduler.total_steps == 16  # one cycle over the whole fit


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_the_trainers_gradient_clipping_is_applied(tmp_path, algorithm) -> None:
    trainer = _trainer(tmp_path, gradient_clip_val=0.05, gradient_clip_algorithm=algorithm)
    result = clrfind.lightning.range_test(trainer, Classifier(), _loader(), **SETTINGS)
    assert (result.clip_grad_norm, result.clip_grad_value) == (
        (0.05, None) if algorithm == "norm" else (None, 0.05)
    )
    net = Classifier().net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    clip = {"clip_grad_norm" if algorithm == "norm" else "clip_grad_value": 0.05}
    plain = clrfind.range_test(
        net, _loader(), torch.nn.functional.cross_entropy, optimizer, **SETTINGS, **clip
    )
    assert result.losses == plain.losses  # the same clipped updates as the plain loop's


class ManualOptimization(Classifier):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False


class TwoOptimizers(Classifier):
    def configure_optimizers(self):
        return [
            torch.optim.SGD(self.net[0].parameters(), lr=0.1),
            torch.optim.SGD(self.net[2].parameters(), lr=0.1),
        ]


class ReturnsNothing(Classifier):
    def training_step(self, batch, batch_idx):
        return None


@pytest.mark.parametrize(
    ("module", "error", "message"),
    [
        (ManualOptimization, UsageError, "manual optimization: its training_step steps the optimizer itself"),
        (TwoOptimizers, UsageError, "configure_optimizers() returned list: the range test needs exactly one"),
        (ReturnsNothing, SetupError, "training_step returned NoneType, not a loss tensor"),
    ],
)
def test_modules_the_test_cannot_run_are_told_why(tmp_path, module, error, message) -> None:
    with pytest.raises(error) as info:
        clrfind.lightning.range_test(_trainer(tmp_path), module(), _loader(), **SETTINGS)
    assert message in str(info.value)


def test_settings_are_checked_when_the_callback_is_made() -> None:
    with pytest.raises(UsageError, match=r"LRRangeTest: unknown setting 'step'") as info:
        clrfind.lightning.LRRangeTest(min_lr=1e-4, max_lr=1.0, step=100)
    assert info.value.hint == "did you mean 'steps'?"
    with pytest.raises(UsageError, match=r"unknown setting 'end_lr'") as info:
        clrfind.lightning.LRRangeTest(end_lr=10)  # torch-lr-finder's name, nearest in spelling to min_lr
    assert info.value.hint == "did you mean 'max_lr'?"


def test_the_readme_example_runs(tmp_path, monkeypatch) -> None:
    """The README's Lightning example, as written, on this module and data."""
    readme = (REPO / "README.md").read_text()
    example = readme.split("### PyTorch Lightning", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope = {"module": Classifier(), "train_loader": _loader()}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["finder"].result.bounds.usable


def test_the_bar_follows_the_trainers_and_save_writes_the_results(tmp_path, progress_seen) -> None:
    quick = {**SETTINGS, "verify_bounds": False}
    clrfind.lightning.range_test(_trainer(tmp_path), Classifier(), _loader(), save=tmp_path / "lr", **quick)
    assert {p.name for p in (tmp_path / "lr").iterdir()} == {
        "range_test.json",
        "range_test.png",
        "schedule.yaml",
    }
    shown = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    clrfind.lightning.range_test(shown, Classifier(), _loader(), **quick)
    clrfind.lightning.range_test(shown, Classifier(), _loader(), progress=False, **quick)  # the caller's wins
    assert progress_seen == [False, True, False]


def test_inside_a_fit_the_test_is_told_its_length(tmp_path) -> None:
    finder = clrfind.lightning.LRRangeTest(min_lr=1e-3, max_lr=3.0, seed=0, verify_bounds=False, apply=False)
    _trainer(tmp_path, max_epochs=20, callbacks=[finder]).fit(Classifier(), _loader())
    # 20 epochs of 16 steps: the test lasts as long as the fit, which the schedule would span.
    assert finder.result.training == clrfind.TrainingLength(epochs=20, steps_per_epoch=16)
    assert finder.result.planned_steps == 320


class Validated(Classifier):
    """Validates on data of its own, as `fit` would (`LRRangeTest` finds it through Lightning)."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def val_dataloader(self):
        return _loader(seed=1)


def test_verify_on_val_judges_the_trials_on_the_validation_data_fit_would_use(tmp_path, plain) -> None:
    judged = {**SETTINGS, "verify_on": "val"}
    given = clrfind.lightning.range_test(
        _trainer(tmp_path), Classifier(), _loader(), val_dataloaders=_loader(seed=1), **judged
    )
    own = clrfind.lightning.range_test(
        _trainer(tmp_path), Validated(), _loader(), **judged
    )  # val_dataloader()
    finder = clrfind.lightning.LRRangeTest(**judged, apply=False)
    _trainer(tmp_path, callbacks=[finder]).fit(Validated(), _loader())
    # a fit that first validates after two epochs, without a sanity check, has not set its validation data up when
    # training starts (trainer.val_dataloaders is None): the module's own val_dataloader() then
    later = clrfind.lightning.LRRangeTest(**judged, apply=False)
    fit = _trainer(tmp_path, callbacks=[later], check_val_every_n_epoch=2, num_sanity_val_steps=0)
    fit.fit(Validated(), _loader())
    for result in (given, own, finder.result, later.result):
        assert result.verification is not None and result.verification.judged_on == "the validation data"
        assert (
            result.losses == plain.losses
        )  # the test itself trains as before; only its trials' judge changed
    assert plain.verification is not None and "training samples held out" in plain.verification.judged_on


def test_verify_on_val_without_validation_data_is_refused_before_anything_runs(tmp_path) -> None:
    module = Classifier()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(SetupError) as info:
        clrfind.lightning.range_test(_trainer(tmp_path), module, _loader(), **SETTINGS, verify_on="val")
    assert info.value.message == (
        "clrfind.lightning.range_test: verify_on 'val' judges the self-check's trials on the validation data, and "
        "there is none"
    )
    assert info.value.hint == (
        "pass val_dataloaders=... (as trainer.fit takes them), or define val_dataloader() on the module or "
        "datamodule, or use verify_on='auto'"
    )
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    with pytest.raises(
        UsageError, match="2 validation dataloaders: the range test judges its self-check on one"
    ):
        clrfind.lightning.range_test(
            _trainer(tmp_path), module, _loader(), val_dataloaders=[_loader(), _loader(1)], verify_on="val"
        )
    finder = clrfind.lightning.LRRangeTest(**SETTINGS, verify_on="val")
    with pytest.raises(SetupError, match=r"^LRRangeTest: verify_on 'val' judges") as info:
        _trainer(tmp_path, callbacks=[finder]).fit(Classifier(), _loader())  # no validation_step: no val data
    assert info.value.hint.startswith("give the fit validation data (a validation_step, and val_dataloaders")
    # without the self-check there is nothing to judge, and nothing is missing
    quick = clrfind.lightning.range_test(
        _trainer(tmp_path), module, _loader(), **SETTINGS, verify_on="val", verify_bounds=False
    )
    assert quick.verification is None
