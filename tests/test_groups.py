"""Parameter groups: built from a spec's name patterns or by the user's own code, their LR ratios kept at every step
of the test and in the exported schedule, which torch's CyclicLR and OneCycleLR take as it is."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_spec
from typer.testing import CliRunner

import clrfind
from clrfind.cli import app
from clrfind.errors import ExportError, SetupError, UsageError
from clrfind.results import SCHEMA_VERSION

NET_PY = """
import torch


class Net(torch.nn.Module):
    \"\"\"A pretrained body (a linear layer and a LayerNorm) under a new head.\"\"\"

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.LayerNorm(16), torch.nn.Tanh())
        self.head = torch.nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.backbone(x))


def split_decay(params, lr, weight_decay):
    \"\"\"A user's own factory: no weight decay on 1-D parameters (biases, norm weights), at half the LR.\"\"\"
    params = list(params)
    return torch.optim.SGD(
        [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
         {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr": lr / 2}],
        lr=lr, momentum=0.9,
    )
"""

GROUPS_SPEC = """
model: {target: net.py:Net}
data:
  train: {target: task.py:blobs, kwargs: {n: 1024}}
  batch_size: 64
loss: {target: torch.nn.CrossEntropyLoss}
optimizer:
  target: torch.optim.SGD
  kwargs: {momentum: 0.9, weight_decay: 0.0005}
  groups:
    - {name: no_decay, params: ["*.bias"], modules: [norm], kwargs: {weight_decay: 0}}
    - {name: backbone, params: ["backbone.*"], lr_scale: 0.1}
range_test: {min_lr: 1.0e-3, max_lr: 2.0, steps: 40}
device: cpu
verify_bounds: false
"""

# Group order as built: the spec's groups, then the parameters no group selected.
NAMES = ["no_decay", "backbone", "default"]
RATIOS = [1.0, 0.1, 1.0]


def _spec(tmp_path, body: str = GROUPS_SPEC):
    from clrfind.spec import load_spec

    (tmp_path / "net.py").write_text(NET_PY)
    return load_spec(write_spec(tmp_path, body))


def _ratios(optimizer) -> list[float]:
    top = max(g["lr"] for g in optimizer.param_groups)
    return [g["lr"] / top for g in optimizer.param_groups]


def test_spec_groups_select_by_pattern_and_module_first_match_wins(tmp_path) -> None:
    from clrfind.build import build_components

    comps = build_components(_spec(tmp_path), device=torch.device("cpu"))
    groups = comps.optimizer.param_groups
    names = {id(p): n for n, p in comps.model.named_parameters()}
    members = {g["name"]: sorted(names[id(p)] for p in g["params"]) for g in groups}
    # backbone.0.bias matches both groups: the first one written gets it; the LayerNorm's weight is a norm's.
    assert members == {
        "no_decay": ["backbone.0.bias", "backbone.1.bias", "backbone.1.weight", "head.bias"],
        "backbone": ["backbone.0.weight"],
        "default": ["head.weight"],
    }
    assert [g["weight_decay"] for g in groups] == [0, 0.0005, 0.0005]
    assert _ratios(comps.optimizer) == pytest.approx(RATIOS)


def test_every_step_keeps_the_groups_ratios_and_the_ladder_drives_the_largest(tmp_path) -> None:
    from clrfind.build import build_components
    from clrfind.engine import default_step, run_loop

    loaded = _spec(tmp_path)
    comps = build_components(loaded, device=torch.device("cpu"))
    seen: list[list[float]] = []

    def step(model, batch, loss_fn):
        seen.append([g["lr"] for g in comps.optimizer.param_groups])
        return default_step(model, batch, loss_fn)

    lrs = loaded.spec.settings().ladder(30)
    out = run_loop(comps.model, comps.train_loader, comps.loss_fn, comps.optimizer, lrs, device=comps.device,
                   step_fn=step)  # fmt: skip
    # A diverged curve ends where the stop was confirmed, up to a few steps before the last step trained.
    assert len(seen) >= len(out.losses) >= 10
    for ladder_lr, group_lrs in zip(out.lrs, seen[: len(out.lrs)], strict=True):
        assert group_lrs == pytest.approx([ladder_lr * r for r in RATIOS], rel=1e-9)


def test_results_and_exported_schedule_per_group_as_torch_takes_them(tmp_path) -> None:
    from clrfind.api import run_spec
    from clrfind.export import build_schedule, load_schedule

    run = run_spec(_spec(tmp_path), out_dir=tmp_path / "run")
    result = run.result
    assert [g.name for g in result.param_groups] == NAMES
    assert [g.lr_ratio for g in result.param_groups] == RATIOS  # 0.1 exactly, not 0.1 * lr / lr in floats
    assert result.param_groups[0].params == ["*.bias"] and result.param_groups[0].modules == ["norm"]
    assert result.param_groups[0].kwargs == {"weight_decay": 0}
    assert [g.param_count for g in result.param_groups] == [16 + 16 + 16 + 2, 32, 32]
    saved = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert saved["schema_version"] == SCHEMA_VERSION and saved["param_groups"][1]["lr_ratio"] == 0.1

    b = result.bounds
    assert b is not None and b.usable
    model = torch.nn.Sequential()  # any model: the optimizer only needs as many groups, in the same order
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in NAMES]
    for policy, kind in (("triangular", torch.optim.lr_scheduler.CyclicLR),
                         ("one-cycle", torch.optim.lr_scheduler.OneCycleLR)):  # fmt: skip
        schedule = build_schedule(result, policy=policy, epochs=12)
        kwargs = schedule["scheduler"]["kwargs"]
        top = (b.peak_lr or b.max_lr) if policy == "one-cycle" else b.max_lr
        assert kwargs["max_lr"] == pytest.approx([top * r for r in RATIOS])
        assert [g["name"] for g in schedule["optimizer"]["groups"]] == NAMES
        # torch's own classes take the lists as they are, and keep the ratios at every step.
        opt = torch.optim.SGD(params, lr=1.0, momentum=0.9)
        scheduler = kind(opt, **kwargs)
        for _ in range(30):
            assert _ratios(opt) == pytest.approx(RATIOS)
            opt.step()
            scheduler.step()
    # load_schedule sets each group's LR on an optimizer with the same groups, built from the same patterns.
    del model
    net = torch.nn.Sequential()
    net.add_module("backbone", torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.LayerNorm(16)))
    net.add_module("head", torch.nn.Linear(16, 2))
    spec_groups = [g.model_dump() for g in _spec(tmp_path).spec.optimizer.groups]
    opt = torch.optim.SGD(clrfind.param_groups(net, spec_groups, lr=0.1), lr=0.1, momentum=0.9)
    scheduler = load_schedule(run.files.schedule, opt)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CyclicLR)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([b.base_lr * r for r in RATIOS])


def test_a_schedule_for_other_groups_is_refused_and_cosine_cannot_keep_ratios(tmp_path) -> None:
    from clrfind.api import run_spec
    from clrfind.export import build_schedule

    run = run_spec(_spec(tmp_path), out_dir=tmp_path / "run")
    one_group = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ExportError, match=r"for 3 parameter groups \(no_decay, backbone, default\) but the "
                       r"optimizer has 1"):  # fmt: skip
        clrfind.load_schedule(run.files.schedule, one_group)
    with pytest.raises(ExportError, match="one eta_min for all groups"):
        build_schedule(run.result, policy="cosine")


def test_the_library_keeps_the_ratios_of_an_optimizer_with_groups(tiny_task) -> None:
    model, loader, loss_fn, _ = tiny_task
    body, head = model[0], model[2]
    optimizer = torch.optim.SGD(
        [
            {"params": body.parameters(), "lr": 0.01},
            {"params": head.parameters(), "lr": 0.1, "weight_decay": 1e-4},
        ],
        momentum=0.9,
    )
    seen = []

    def step(m, batch, lf):
        seen.append([g["lr"] for g in optimizer.param_groups])
        x, y = batch
        return lf(m(x), y)

    result = clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=10.0, steps=40,
                                step_fn=step, verify_bounds=False)  # fmt: skip
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]  # restored
    # The last run in `seen` is the one the result holds (a flat test runs again up to a wider end first); its
    # curve ends where a stop was confirmed, a few steps before the last step trained.
    start = max(i for i, (_, head_lr) in enumerate(seen) if head_lr == result.lrs[0])
    assert len(seen) - start >= len(result.lrs)
    for ladder_lr, (body_lr, head_lr) in zip(result.lrs, seen[start : start + len(result.lrs)], strict=True):
        assert head_lr == ladder_lr and body_lr == pytest.approx(0.1 * ladder_lr, rel=1e-9)
    groups = result.param_groups
    assert [(g.name, g.lr_ratio, g.tensors, g.kwargs) for g in groups] == [
        ("group0", 0.1, 2, {}),
        ("group1", 1.0, 2, {"weight_decay": 0.0001}),
    ]


def test_a_users_factory_with_groups_is_recorded(tmp_path) -> None:
    from clrfind.api import run_spec

    body = GROUPS_SPEC.split("optimizer:")[0] + (
        "optimizer: {target: net.py:split_decay, kwargs: {weight_decay: 0.01}}\n"
        "range_test: {min_lr: 1.0e-3, max_lr: 2.0, steps: 30}\ndevice: cpu\nverify_bounds: false\n"
    )
    result = run_spec(_spec(tmp_path, body), out_dir=tmp_path / "run").result
    # Options are recorded where they differ from the optimizer's own (its SGD was built without weight decay).
    assert [(g.name, g.lr_ratio, g.tensors, g.kwargs) for g in result.param_groups] == [
        ("group0", 1.0, 2, {"weight_decay": 0.01}),
        ("group1", 0.5, 4, {}),
    ]


@pytest.mark.parametrize(
    ("groups", "error", "message"),
    [
        ([{"params": ["backbone.*"]}, {"params": ["backbone.0.*"]}], SetupError,
         r"groups\[1\] \(group1, params \['backbone.0.\*'\]\): every parameter it selects is in group 'group0'"),
        ([{"params": ["encoder.*"]}], SetupError,
         r"groups\[0\] \(group0, params \['encoder.\*'\]\): no parameter matches it; parameter names look like "
         r"backbone.0.weight"),
        ([{"params": ["*.bias"], "weight_decay": 0}], UsageError,
         r"groups\[0\].weight_decay: unknown key \(put optimizer options under kwargs\)"),
        ([{"params": ["*.bias"], "lr_scale": 0.1}], UsageError, r"lr_scale needs the optimizer's lr: pass lr="),
    ],
)  # fmt: skip
def test_param_groups_says_what_does_not_fit(tmp_path, groups, error, message) -> None:
    import importlib.util

    (tmp_path / "net.py").write_text(NET_PY)
    spec = importlib.util.spec_from_file_location("net_for_groups", tmp_path / "net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(error, match=message):
        clrfind.param_groups(module.Net(), groups)


def test_a_misspelt_group_option_is_a_one_line_error(tmp_path) -> None:
    _spec(tmp_path, GROUPS_SPEC.replace("kwargs: {weight_decay: 0}", "kwargs: {weight_decy: 0}"))
    res = CliRunner().invoke(app, ["check", str(tmp_path / "spec.yaml")])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(
        "error: spec.yaml: optimizer.groups[0].kwargs.weight_decy: SGD has no option 'weight_decy' "
        "(did you mean 'weight_decay'?)"
    )


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ("{name: a}", "optimizer.groups[0]: selects nothing"),
        ("{params: ['*'], kwargs: {lr: 0.1}}", "optimizer.groups[0].kwargs: the test sets lr"),
        ("{params: ['*'], weight_decay: 0}", "optimizer.groups[0].weight_decay: unknown key"),
        ("{name: default, params: ['*']}", "optimizer.groups[0].name: 'default' names the group"),
    ],
)
def test_bad_groups_in_a_spec_name_the_key(tmp_path, group: str, message: str) -> None:
    from clrfind.errors import SpecError

    body = GROUPS_SPEC.replace(
        '    - {name: no_decay, params: ["*.bias"], modules: [norm], kwargs: {weight_decay: 0}}\n',
        f"    - {group}\n",
    )
    with pytest.raises(SpecError) as info:
        _spec(tmp_path, body)
    assert message in str(info.value)


def test_a_version_3_results_file_loads_and_exports_one_lr_for_all(tmp_path) -> None:
    """Files written before groups, clipping and peak memory were recorded load with their defaults."""
    from conftest import BASE_SPEC

    from clrfind.api import run_spec
    from clrfind.export import build_schedule

    result = run_spec(_spec(tmp_path, BASE_SPEC + "verify_bounds: false\n"), out_dir=tmp_path / "run").result
    data = json.loads(result.model_dump_json())
    for key in ("param_groups", "clip_grad_norm", "clip_grad_value", "from_trained_state", "peak_memory"):
        del data[key]
    data["schema_version"] = 3
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(data))
    loaded = clrfind.load_results(path)
    assert (
        loaded.schema_version == SCHEMA_VERSION and loaded.param_groups is None and loaded.peak_memory is None
    )
    schedule = build_schedule(loaded, policy="triangular")
    assert "groups" not in schedule["optimizer"] and isinstance(
        schedule["scheduler"]["kwargs"]["max_lr"], float
    )
