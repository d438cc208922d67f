"""Nothing lost, whatever stops the run: signals, sys.exit() in user code, repeats, sweeps and torchrun ranks.

Each case runs the real CLI in a subprocess on a tiny seeded CPU task and checks the exit code, that stderr holds
exactly one `error:` line and no traceback, and that what is left in --out is whole, from one run, and readable by
`clrfind plot` and `clrfind export`. Faults come from a hooks file the spec names, steered by environment variables:
`CLRFIND_TEST_ACT=<what>@<where>` (term, int: a real signal to the process itself; exit0, exit3: sys.exit; raise)
fires at the `CLRFIND_TEST_AT`-th call of <where> (step, model, data, loss-init, loss, getitem, optimizer).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from typer.testing import CliRunner

from clrfind import stops
from clrfind.cli import app
from clrfind.errors import RunInterrupted, describe_exception

HOOKS = '''
import os, signal, sys, time, pathlib
import torch
from torch.utils.data import Dataset

ACT, _, WHERE = os.environ.get("CLRFIND_TEST_ACT", "").partition("@")
AT = int(os.environ.get("CLRFIND_TEST_AT", "1"))
calls = {}


def hook(where):
    """Do ACT at the AT-th call of WHERE (on rank CLRFIND_TEST_RANK only, when given)."""
    calls[where] = calls.get(where, 0) + 1
    rank = os.environ.get("CLRFIND_TEST_RANK")
    if where != WHERE or calls[where] != AT or (rank is not None and os.environ.get("RANK") != rank):
        return
    if ACT in ("term", "int"):
        os.kill(os.getpid(), signal.SIGTERM if ACT == "term" else signal.SIGINT)
    elif ACT.startswith("exit"):
        sys.exit(int(ACT[4:]))
    elif ACT == "raise":
        raise ValueError("boom from the hooks")
    elif ACT == "wait":  # for a signal from the test: say so, then take long steps
        pathlib.Path(os.environ["CLRFIND_TEST_MARKER"]).touch()
        time.sleep(0.02)


class Net(torch.nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        hook("model")
        self.body = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2))

    def forward(self, x):
        return self.body(x)


class Blobs(Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 2, generator=g)
        self.y = (self.x[:, 0] + 0.5 * self.x[:, 1] > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        hook("getitem")
        return self.x[i], self.y[i]


def blobs(n=1024):
    hook("data")
    return Blobs(n)


class Loss(torch.nn.CrossEntropyLoss):
    def __init__(self):
        hook("loss-init")
        super().__init__()

    def forward(self, out, y):
        hook("loss")
        return super().forward(out, y)


def step(model, batch, loss_fn):
    hook("step")
    x, y = batch
    if ACT == "wait":
        hook("step")
    return loss_fn(model(x), y)
'''

SPEC = """
model: {target: hooks.py:Net, kwargs: {hidden: 16}}
data:
  train: {target: hooks.py:blobs, kwargs: {n: 1024}}
  batch_size: 64
loss: {target: hooks.py:Loss}
optimizer: {target: torch.optim.SGD, kwargs: {momentum: 0.9}}
step: {target: hooks.py:step}
range_test: {min_lr: 1.0e-3, max_lr: 2.0, steps: 30}
device: cpu
seed: 0
"""
# The same task without a step target: the default step calls the loss, whose forward can fail mid-run.
SPEC_DEFAULT_STEP = SPEC.replace("step: {target: hooks.py:step}\n", "")

TERM, INT = int(signal.SIGTERM), int(signal.SIGINT)
FINISHED = ("completed", "diverged", "non-finite")  # how a test that nothing stopped may end
CLRFIND_SOURCE = f'File "{REPO / "clrfind"}'


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder with the hooks file and the specs, shared by every case (each writes its own --out)."""
    folder = tmp_path_factory.mktemp("stops")
    (folder / "hooks.py").write_text(HOOKS)
    (folder / "spec.yaml").write_text(SPEC)
    (folder / "default_step.yaml").write_text(SPEC_DEFAULT_STEP)
    # Completes its 20 steps, still falling at 0.05; without the self-check's initial state it is not run again
    # up to 0.5 (`Trainer.widen`), so each value takes exactly 20 steps and a step count says which value it is in.
    sweep = SPEC.replace("max_lr: 2.0", "max_lr: 0.05") + "verify_bounds: false\n"
    (folder / "sweep.yaml").write_text(sweep)
    return folder


def _env(act: str = "", at: int = 1, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CLRFIND_TEST_ACT": act, "CLRFIND_TEST_AT": str(at), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def _default_signals() -> None:
    # A shell starts background jobs with SIGINT ignored and children inherit it (clrfind then leaves Ctrl-C
    # alone, as under nohup): the run under test gets the default dispositions, however pytest was started.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def clrfind(
    *args: str, act: str = "", at: int = 1, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m clrfind ARGS` (or `python -c CODE ARGS`, the CLI behind a fault injected in the process)."""
    head = ["-m", "clrfind"] if code is None else ["-c", code]
    return subprocess.run(
        [sys.executable, *head, *args], capture_output=True, text=True, cwd=REPO, env=_env(act, at),
        timeout=300, preexec_fn=_default_signals,
    )  # fmt: skip


def one_error(res: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The exit code, and the single `error:` line that is all of stderr; returns that line."""
    assert res.returncode == exit_code, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def saved_run(out: Path, stop_reason: str | tuple[str, ...]) -> dict:
    """The run in `out` is whole and one run's: results with `stop_reason`, the plot when steps ran, a schedule
    exactly when the bounds allow one (and matching them), no temporary files; `plot` and `export` read it."""
    data = json.loads((out / "range_test.json").read_text())
    assert data["stop_reason"] in ((stop_reason,) if isinstance(stop_reason, str) else stop_reason), data
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert (out / "range_test.png").exists() == (len(data["lrs"]) > 0)
    bounds = data["bounds"]
    usable = bool(bounds and bounds.get("max_lr"))
    assert (out / "schedule.yaml").exists() == usable
    if usable:
        sched = yaml.safe_load((out / "schedule.yaml").read_text())
        assert sched["scheduler"]["kwargs"]["max_lr"] == pytest.approx(bounds["max_lr"])
    runner = CliRunner()
    res = runner.invoke(app, ["plot", str(out), "--out", str(out.parent / f"{out.name}-again.png")])
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(app, ["export", str(out), "--out", "-"])
    if usable:
        assert res.exit_code == 0 and "scheduler" in res.stdout, res.stderr
    else:  # nothing to export: said in one line
        assert res.exit_code == 2 and res.stderr.count("error:") == 1, res.stderr
    return data


def _range_test(
    task: Path, out: Path, *extra: str, spec: str = "spec.yaml", **kw
) -> subprocess.CompletedProcess:
    return clrfind("range-test", str(task / spec), "--out", str(out), "--quiet", *extra, **kw)


# -- signals -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("act", "code", "words"), [("term", 143, "terminated by SIGTERM"), ("int", 130, "interrupted")]
)
@pytest.mark.parametrize("at", [1, 6])
def test_a_signal_mid_run_saves_the_steps_so_far(task: Path, tmp_path: Path, act: str, code: int, words: str,
                                                 at: int) -> None:  # fmt: skip
    out = tmp_path / "run"
    line = one_error(_range_test(task, out, act=f"{act}@step", at=at), code)
    assert line.startswith(f"error: {words} at step {at - 1} of 30; partial results saved to {out}")
    data = saved_run(out, "interrupted")
    assert len(data["lrs"]) == at - 1
    assert data["stop_detail"] == (
        "terminated by SIGTERM" if act == "term" else "interrupted by the user (Ctrl-C)"
    )


@pytest.mark.parametrize(("sig", "code"), [(TERM, 143), (INT, 130)])
def test_a_signal_from_outside_stops_the_run_cleanly(task: Path, tmp_path: Path, sig: int, code: int) -> None:
    """What `timeout`, Slurm or a terminal send: the signal comes from another process at an unknown step."""
    out, marker = tmp_path / "run", tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-m", "clrfind", "range-test", str(task / "spec.yaml"), "--out", str(out), "--quiet",
         "--steps", "3000", "--max-lr", "0.01"],
        cwd=REPO, env=_env("wait@step", 2, CLRFIND_TEST_MARKER=str(marker)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals,
    )  # fmt: skip
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert "partial results saved" in one_error(res, code)
    assert 1 <= len(saved_run(out, "interrupted")["lrs"]) < 3000


# The CLI with a fault injected into its file writes: after the N-th file is in place, the listed signals arrive.
SIGNAL_WHILE_SAVING = """
import os, sys
real, count = os.replace, [0]
def replace(src, dst):
    real(src, dst)
    count[0] += 1
    if count[0] == {nth}:
        for sig in {signals}:
            os.kill(os.getpid(), sig)
os.replace = replace
sys.argv[0] = "clrfind"
from clrfind.cli import main
main()
"""


@pytest.mark.parametrize(("sig", "code"), [(TERM, 143), (INT, 130)])
@pytest.mark.parametrize("nth", [1, 2])
def test_a_first_signal_while_saving_waits_for_every_file(task: Path, tmp_path: Path, sig: int, code: int,
                                                          nth: int) -> None:  # fmt: skip
    out = tmp_path / "run"
    injected = SIGNAL_WHILE_SAVING.format(nth=nth, signals=[sig])
    line = one_error(_range_test(task, out, "--no-verify-bounds", code=injected), code)
    assert "while saving; the run (" in line and f"was saved to {out}" in line
    saved_run(out, FINISHED)


@pytest.mark.parametrize(("sig", "code"), [(TERM, 143), (INT, 130)])
def test_a_second_signal_while_saving_exits_at_once_leaving_whole_files(task: Path, tmp_path: Path, sig: int,
                                                                       code: int) -> None:  # fmt: skip
    out = tmp_path / "run"
    res = _range_test(
        task, out, "--no-verify-bounds", code=SIGNAL_WHILE_SAVING.format(nth=1, signals=[sig, sig])
    )
    assert res.returncode == code and "Traceback" not in res.stderr and res.stderr.count("error:") <= 1
    json.loads((out / "range_test.json").read_text())  # the file written before the exit is whole
    assert not (out / "schedule.yaml").exists()  # the exit came before it
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_signal_after_the_last_step_stops_the_self_check_and_keeps_the_bounds(
    task: Path, tmp_path: Path
) -> None:
    """The held-out split reads the data after the last step; a SIGTERM there is held, then stops the trials."""
    out = tmp_path / "run"
    # getitem is called 64 times per batch; 30 steps at most, so call 64 * 31 + 1 happens after the loop.
    res = _range_test(task, out, "--max-lr", "0.3", act="term@getitem", at=64 * 31 + 1)
    assert "terminated by SIGTERM during the self-check" in one_error(res, 143)
    data = saved_run(out, "completed")
    assert data["verification"]["outcome"].startswith(
        "terminated by SIGTERM: the range test's bounds are kept"
    )


@pytest.mark.parametrize(("act", "code", "where"), [("term@model", 143, "model"), ("int@data", 130, "data"),
                                                    ("term@loss-init", 143, "loss")])  # fmt: skip
def test_a_signal_during_setup_saves_nothing_and_says_so(task: Path, tmp_path: Path, act: str, code: int,
                                                         where: str) -> None:  # fmt: skip
    out = tmp_path / "run"
    line = one_error(_range_test(task, out, act=act), code)
    assert line.endswith("while building the model and data; nothing was measured or saved")
    assert not (out / "range_test.json").exists()


def test_an_ignored_sigterm_stays_ignored(task: Path, tmp_path: Path) -> None:
    """Started with SIGTERM ignored (as nohup does SIGHUP), the run leaves it so: the signal changes nothing."""
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "clrfind", "range-test", str(task / "spec.yaml"), "--out", str(out), "--quiet",
         "--no-verify-bounds"],
        capture_output=True, text=True, cwd=REPO, env=_env("term@step", 3), timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )  # fmt: skip
    assert res.returncode == 0 and res.stderr == "", res.stderr
    saved_run(out, FINISHED)


# -- sys.exit() in user code ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ["exit0", "exit3"])
def test_sys_exit_in_a_step_mid_run_is_a_failure_of_that_step(task: Path, tmp_path: Path, act: str) -> None:
    out = tmp_path / "run"
    line = one_error(_range_test(task, out, act=f"{act}@step", at=6), 1)
    code = act[4:]
    assert f"step.target 'hooks.py:step' raised SystemExit at step 5: sys.exit({code}) was called" in line
    assert f"partial results saved to {out / 'range_test.json'}" in line
    data = saved_run(out, "error")
    assert len(data["lrs"]) == 5


@pytest.mark.parametrize(
    ("act", "at", "named"),
    [("exit0@getitem", 64 * 4 + 1, "data.train 'hooks.py:blobs' raised SystemExit at step 4"),
     ("exit2@loss", 7, "raised SystemExit at step 6: sys.exit(2) was called")],
)  # fmt: skip
def test_sys_exit_in_the_data_or_the_loss_mid_run_saves_the_steps(task: Path, tmp_path: Path, act: str, at: int,
                                                                 named: str) -> None:  # fmt: skip
    out = tmp_path / "run"
    line = one_error(_range_test(task, out, act=act, at=at, spec="default_step.yaml"), 1)
    assert named in line
    saved_run(out, "error")


@pytest.mark.parametrize(
    ("act", "named"),
    [("exit0@model", "model.target 'hooks.py:Net' raised SystemExit: sys.exit(0) was called"),
     ("exit3@data", "data.train.target 'hooks.py:blobs' raised SystemExit: sys.exit(3) was called"),
     ("exit0@loss-init", "loss.target 'hooks.py:Loss' raised SystemExit: sys.exit(0) was called"),
     ("exit0@step", "step.target 'hooks.py:step' failed on the first batch"),
     ("exit0@loss", "the loss rejected model output")],
)  # fmt: skip
def test_sys_exit_during_setup_or_the_first_step_is_a_setup_error(task: Path, tmp_path: Path, act: str,
                                                                  named: str) -> None:  # fmt: skip
    out = tmp_path / "run"
    spec = "default_step.yaml" if act == "exit0@loss" else "spec.yaml"
    line = one_error(_range_test(task, out, act=act, spec=spec), 2)
    assert named in line and "SystemExit" in line
    assert not (out / "range_test.json").exists()


def test_sys_exit_on_import_of_a_target_file_is_a_target_error(tmp_path: Path) -> None:
    (tmp_path / "hooks.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "spec.yaml").write_text(SPEC)
    line = one_error(clrfind("range-test", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "run")), 2)
    assert "importing 'hooks.py' raised SystemExit: sys.exit(0) was called" in line


def test_sys_exit_in_a_dry_run_is_the_same_setup_error(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    line = one_error(_range_test(task, out, "--dry-run", act="exit0@step"), 2)
    assert "step.target 'hooks.py:step' failed on the first batch" in line
    assert not out.exists() or not any(out.iterdir())


# -- repeats -------------------------------------------------------------------------------------------------------


def test_repeats_save_every_run_as_it_finishes(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = _range_test(task, out, "--repeats", "2", "--steps", "20")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    data = saved_run(out, json.loads((out / "range_test.json").read_text())["stop_reason"])
    assert [r["seed"] for r in data["runs"]] == [0, 1]
    for k in (1, 2):
        run = json.loads((out / f"run-{k}" / "range_test.json").read_text())
        assert run["seed"] == k - 1 and run["losses"] == data["runs"][k - 1]["losses"]


@pytest.mark.parametrize(
    ("act", "code", "stop"),
    [("int@step", 130, "interrupted"), ("term@step", 143, "interrupted"), ("raise@step", 1, "error"),
     ("exit0@step", 1, "error")],
)  # fmt: skip
def test_repeats_stopped_in_run_2_keep_run_1(
    task: Path, tmp_path: Path, act: str, code: int, stop: str
) -> None:
    out = tmp_path / "rep"
    # Run 1 takes at most 20 steps (it may diverge earlier): a step counter past 20 lands in run 2 or later.
    line = one_error(_range_test(task, out, "--repeats", "3", "--steps", "20", "--max-lr", "0.05", act=act, at=25),
                     code)  # fmt: skip
    assert line.startswith("error: run 2 of 3: ") and f"finished runs kept in {out / 'run-1'}" in line
    assert saved_run(out / "run-1", "completed")["seed"] == 0
    assert saved_run(out / "run-2", stop)["seed"] == 1
    assert not (out / "run-3").exists()
    assert not (out / "range_test.json").exists()  # one finished run makes no aggregate


def test_repeats_stopped_in_run_3_keep_the_aggregate_of_the_first_two(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = _range_test(
        task, out, "--repeats", "3", "--steps", "20", "--max-lr", "0.05", act="term@step", at=45
    )
    line = one_error(res, 143)
    assert line.startswith("error: run 3 of 3: terminated by SIGTERM at step 4 of 20")
    assert f"and their aggregate in {out}" in line
    data = saved_run(out, "completed")
    assert [r["seed"] for r in data["runs"]] == [0, 1]
    assert any(n.startswith("only 2 of 3 runs finished: run 3 stopped") for n in data["notes"])
    saved_run(out / "run-3", "interrupted")


def test_repeats_interrupted_in_the_first_run_keep_its_steps(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    line = one_error(_range_test(task, out, "--repeats", "2", "--steps", "20", act="int@step", at=4), 130)
    assert line.startswith("error: run 1 of 2: interrupted at step 3 of 20") and line.endswith(
        "no run had finished"
    )
    assert len(saved_run(out / "run-1", "interrupted")["lrs"]) == 3


# -- sweeps --------------------------------------------------------------------------------------------------------


def _sweep(task: Path, out: Path, **kw) -> subprocess.CompletedProcess[str]:
    return clrfind("sweep", str(task / "sweep.yaml"), "--set", "optimizer.kwargs.weight_decay=0,0.001,0.01",
                   "--out", str(out), "--quiet", "--steps", "20", **kw)  # fmt: skip


@pytest.mark.parametrize(("act", "code"), [("int@step", 130), ("term@step", 143)])
def test_a_signal_stops_the_whole_sweep_and_keeps_what_ran(
    task: Path, tmp_path: Path, act: str, code: int
) -> None:
    out = tmp_path / "sw"
    line = one_error(_sweep(task, out, act=act, at=25), code)
    assert line.startswith("error: sweep stopped in weight_decay=0.001 (2 of 3): ")
    assert "finished: weight_decay=0; not run: weight_decay=0.01" in line
    sweep = json.loads((out / "sweep.json").read_text())
    assert [(r["label"], r["stop_reason"]) for r in sweep["runs"]] == [
        ("weight_decay=0", "completed"), ("weight_decay=0.001", "interrupted")
    ]  # fmt: skip
    assert sweep["recommended"] in (None, "weight_decay=0")
    saved_run(out / "weight_decay=0", "completed")
    saved_run(out / "weight_decay=0.001", "interrupted")
    assert not (out / "weight_decay=0.01").exists()
    res = CliRunner().invoke(app, ["plot", str(out / "sweep.json"), "--out", str(tmp_path / "again.png")])
    assert res.exit_code == 0 and (out / "sweep.png").exists(), res.stderr


def test_a_signal_in_the_first_value_leaves_a_sweep_file_without_a_plot(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "sw"
    line = one_error(_sweep(task, out, act="term@step", at=3), 143)
    assert "finished: none; not run: weight_decay=0.001, weight_decay=0.01" in line
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["stop_reason"] for r in sweep["runs"]] == ["interrupted"] and not (out / "sweep.png").exists()
    saved_run(out / "weight_decay=0", "interrupted")


@pytest.mark.parametrize("act", ["raise@step", "exit3@step"])
def test_a_failing_value_does_not_stop_the_sweep(task: Path, tmp_path: Path, act: str) -> None:
    out = tmp_path / "sw"
    res = _sweep(task, out, act=act, at=25)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["stop_reason"] for r in sweep["runs"]] == ["completed", "error", "completed"]
    assert "raised" in sweep["runs"][1]["error"]
    saved_run(out / "weight_decay=0.001", "error")


# -- torchrun ------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(task: Path, out: Path, *args: str, act: str = "", at: int = 1, rank: str | None = None):
    pytest.importorskip("torch.distributed.run")
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    env = _env(act, at, **({"CLRFIND_TEST_RANK": rank} if rank is not None else {}))
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
         "-m", "clrfind", "range-test", str(task / "spec.yaml"), "--out", str(out), "--quiet", "--steps", "20",
         *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300, preexec_fn=_default_signals,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rank", "act", "what"),
    [("1", "raise@step", "raised ValueError at step 4: boom from the hooks"),
     ("0", "exit3@step", "raised SystemExit at step 4: sys.exit(3) was called")],
)  # fmt: skip
def test_a_failing_rank_is_reported_once_and_rank_0_saves_its_steps(task: Path, tmp_path: Path, rank: str, act: str,
                                                                   what: str) -> None:  # fmt: skip
    out = tmp_path / "run"
    res = _torchrun(task, out, act=act, at=5, rank=rank)
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert errors[0].startswith(f"error: rank {rank}: step.target 'hooks.py:step' {what}")
    assert CLRFIND_SOURCE not in res.stderr  # torchrun's own report may follow; no traceback from clrfind
    data = saved_run(out, "error")
    assert data["world_size"] == 2 and len(data["lrs"]) == 4
    if rank == "1":
        assert data["stop_detail"].startswith("rank 1 failed: step.target 'hooks.py:step' raised ValueError")


@pytest.mark.slow
def test_repeats_under_torchrun_train_on_every_rank_and_rank_0_writes(task: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _torchrun(task, out, "--repeats", "2", "--max-lr", "0.05")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("suggested:") == 1 and "2 runs, 2 processes, global batch 128" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "range_test.json", "range_test.png", "run-1", "run-2", "schedule.yaml"
    ]  # fmt: skip
    data = saved_run(out, "completed")
    assert data["world_size"] == 2 and [r["seed"] for r in data["runs"]] == [0, 1]
    for k in (1, 2):
        assert saved_run(out / f"run-{k}", "completed")["world_size"] == 2


# -- the pieces, in process ----------------------------------------------------------------------------------------


def test_a_stop_inside_a_deferred_block_waits_for_its_end() -> None:
    with stops.stop_signals():
        with stops.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler has run: the stop is held, not raised
        with pytest.raises(RunInterrupted) as caught:
            stops.raise_pending("the files were saved")
    assert caught.value.exit_code == 143 and str(caught.value).startswith(
        "terminated by SIGTERM while saving"
    )


@pytest.fixture
def sigint_not_ignored():
    """In-process cases need Ctrl-C's own handler: a shell starts background jobs (the suite run under nohup or
    `&`) with SIGINT ignored, which clrfind then leaves alone, as the user asked."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("sigint_not_ignored")
def test_a_held_stop_is_raised_where_stops_are_allowed() -> None:
    with stops.stop_signals(), stops.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        with pytest.raises(stops.Interrupt) as caught, stops.allowed():
            pytest.fail("a held stop must be raised before the block runs")
    assert stops.signal_of(caught.value) == signal.SIGINT and stops.take_pending() is None


@pytest.mark.usefixtures("sigint_not_ignored")
def test_handlers_are_put_back_and_ignored_signals_left_alone() -> None:
    before = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with stops.stop_signals():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) is not before
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sys_exit_is_described_as_a_call() -> None:
    assert describe_exception(SystemExit(3)) == "SystemExit: sys.exit(3) was called"
    assert describe_exception(SystemExit()) == "SystemExit: sys.exit(None) was called"
    assert stops.stop_verb(int(signal.SIGTERM)) == "terminated by SIGTERM"
    assert (
        RunInterrupted("x", signum=signal.SIGTERM).exit_code == 143 and RunInterrupted("x").exit_code == 130
    )
