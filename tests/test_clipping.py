"""Gradient clipping in the range test: between backward and step, unscaled first under fp16, exactly as
torch.nn.utils.clip_grad_norm_ / clip_grad_value_ in a training loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import clrfind
from clrfind.errors import RunError, SetupError, SpecError, UsageError

CLIPS = {
    "clip_grad_norm": lambda params, x: torch.nn.utils.clip_grad_norm_(params, x),
    "clip_grad_value": lambda params, x: torch.nn.utils.clip_grad_value_(params, x),
}


def _task():
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)  # the same batches for the replica
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    return model, loader


def _by_hand(model, loader, lrs, *, clip=None, precision: str = "fp32") -> None:
    """The training loop a user writes, at the LRs the range test used."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lrs[0], momentum=0.9)
    # torch < 2.3 has no CPU scaler: fp16 then runs autocast unscaled, as the engine does.
    scaled = precision == "fp16" and hasattr(torch.amp, "GradScaler")
    scaler = torch.amp.GradScaler("cpu") if scaled else None
    loss_fn = torch.nn.CrossEntropyLoss()
    for lr, (x, y) in zip(lrs, loader, strict=False):
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16, enabled=precision == "fp16"):
            loss = loss_fn(model(x), y)
        if scaler is None:
            loss.backward()
            if clip is not None:
                clip(model.parameters())
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if clip is not None:
                clip(model.parameters())
            scaler.step(optimizer)
            scaler.update()


@pytest.mark.parametrize(("how", "threshold"), [("clip_grad_norm", 0.05), ("clip_grad_value", 0.01)])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_clipping_changes_the_update_exactly_as_torch_does(
    how: str, threshold: float, precision: str
) -> None:
    model, loader = _task()
    replica, unclipped = copy.deepcopy(model), copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = clrfind.range_test(model, loader, torch.nn.CrossEntropyLoss(), optimizer, min_lr=0.05, max_lr=0.5,
                                steps=5, restore=False, verify_bounds=False, precision=precision,
                                **{how: threshold})  # fmt: skip
    assert result.steps_run == 5 and getattr(result, how) == threshold
    _by_hand(replica, loader, result.lrs, clip=lambda p: CLIPS[how](p, threshold), precision=precision)
    _by_hand(unclipped, loader, result.lrs, precision=precision)
    for (name, p), q, r in zip(
        model.named_parameters(), replica.parameters(), unclipped.parameters(), strict=True
    ):
        assert torch.equal(p, q), name
        assert not torch.equal(p, r), f"{name}: clipping at {threshold} changed nothing: the test cannot fail"


def test_both_ways_of_clipping_at_once_are_refused(tmp_path, tiny_task) -> None:
    from conftest import BASE_SPEC, write_spec

    from clrfind.spec import load_spec

    model, loader, loss_fn, optimizer = tiny_task
    with pytest.raises(UsageError, match="clip_grad_value: set either clip_grad_norm or clip_grad_value"):
        clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=1.0, clip_grad_norm=1.0,
                           clip_grad_value=1.0)  # fmt: skip
    with pytest.raises(UsageError, match="clip_grad_norm: Input should be greater than 0"):
        clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=1.0, clip_grad_norm=0.0)
    spec = write_spec(tmp_path, BASE_SPEC + "clip_grad_norm: 1.0\nclip_grad_value: 0.5\n")
    with pytest.raises(
        SpecError, match=r"spec\.yaml: clip_grad_value: set either clip_grad_norm or clip_grad_value"
    ):
        load_spec(spec)


def test_a_spec_clips_and_the_results_say_so(tmp_path) -> None:
    from conftest import BASE_SPEC, write_spec

    from clrfind.api import run_spec
    from clrfind.spec import load_spec

    spec = write_spec(
        tmp_path, BASE_SPEC.replace("steps: 60", "steps: 20") + "clip_grad_norm: 0.5\nverify_bounds: false\n"
    )
    result = run_spec(load_spec(spec), out_dir=tmp_path / "run").result
    assert result.clip_grad_norm == 0.5 and result.clip_grad_value is None
    assert clrfind.load_results(tmp_path / "run").clip_grad_norm == 0.5


class _SparseNet(torch.nn.Module):
    """An embedding with sparse gradients (as recommenders use with SparseAdam) and a dense head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 4, sparse=True)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


def sparse_ids() -> TensorDataset:
    """Token ids and their parity, from the global RNG (seeded by the caller, or by a spec's `seed`); a spec names it
    as `test_clipping:sparse_ids`."""
    ids = torch.randint(0, 50, (256,))
    return TensorDataset(ids, ids % 2)


def _sparse_task():
    torch.manual_seed(0)
    loader = DataLoader(sparse_ids(), batch_size=32)
    return _SparseNet(), loader


def test_sparse_gradients_train_without_clipping() -> None:
    model, loader = _sparse_task()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # SGD steps sparse and dense gradients alike
    result = clrfind.range_test(model, loader, torch.nn.CrossEntropyLoss(), optimizer, min_lr=1e-3, max_lr=1.0,
                                steps=20, verify_bounds=False)  # fmt: skip
    assert result.steps_run == 20


@pytest.mark.parametrize("how", ["clip_grad_norm", "clip_grad_value"])
def test_clipping_sparse_gradients_is_a_setup_error_that_names_the_clipping(how: str) -> None:
    # torch's clip_grad_norm_ / clip_grad_value_ raise a backend error on a sparse gradient; without the check it
    # read "optimizer raised NotImplementedError", blaming the wrong part.
    model, loader = _sparse_task()
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SetupError, match=rf"^{how}: torch cannot clip sparse gradients, and model has some "
                       r"\(embed\.weight\)") as caught:  # fmt: skip
        clrfind.range_test(model, loader, torch.nn.CrossEntropyLoss(), optimizer, min_lr=1e-3, max_lr=1.0,
                           steps=20, **{how: 1.0})  # fmt: skip
    assert f"pass {how}=None" in caught.value.hint
    for name, value in model.state_dict().items():  # the caller's state is put back
        assert torch.equal(value, before[name]), name


def test_a_spec_that_clips_sparse_gradients_exits_2_naming_the_file_and_key(tmp_path) -> None:
    from conftest import BASE_SPEC, write_spec
    from typer.testing import CliRunner

    from clrfind.cli import app

    body = BASE_SPEC.replace("task.py:Net, kwargs: {hidden: 16}", "test_clipping:_SparseNet").replace(
        "task.py:blobs, kwargs: {n: 1024}", "test_clipping:sparse_ids"
    )
    spec = write_spec(tmp_path, body + "clip_grad_norm: 1.0\n")
    res = CliRunner().invoke(app, ["range-test", str(spec), "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr.startswith(
        "error: spec.yaml: clip_grad_norm: torch cannot clip sparse gradients, and model.target "
        "'test_clipping:_SparseNet' has some (embed.weight) (remove clip_grad_norm"
    )
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_a_clipping_failure_mid_run_is_reported_as_the_clippings(monkeypatch) -> None:
    model, loader = _task()
    real, calls = torch.nn.utils.clip_grad_norm_, []

    def failing(params, max_norm):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("clipping broke")
        return real(params, max_norm)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", failing)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(RunError, match=r"clip_grad_norm raised RuntimeError at step 3: clipping broke"):
        clrfind.range_test(model, loader, torch.nn.CrossEntropyLoss(), optimizer, min_lr=0.05, max_lr=0.5,
                           steps=8, verify_bounds=False, clip_grad_norm=1.0)  # fmt: skip
