"""Issue 15, as a hostile new user would try it: full disks, size limits, stale and shared output folders, odd
`--out` paths, hostile YAML and results files, framework usage errors, and faults blamed on the right code.

Every case asserts the exit code, exactly one `error:` line on stderr and no traceback, and that what is left in
`--out` is one run's files, loadable by `clrfind plot` and `clrfind export`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BASE_SPEC, REPO, write_spec
from typer.testing import CliRunner

from clrfind import fileio
from clrfind.cli import app

NAMES = {"range_test.json", "range_test.png", "schedule.yaml"}

# Loss factories and data that fail in ways the user's code, not clrfind, is to blame for.
HOSTILE_PY = '''
import os
import signal

import torch
from task import Net, blobs


def int_loss():
    return lambda output, target: 3


def vector_loss():
    return lambda output, target: torch.nn.functional.cross_entropy(output, target, reduction="none")


def detached_loss():
    return lambda output, target: torch.nn.functional.cross_entropy(output, target).detach()


class Tagged(Net):
    def __init__(self, tag="", hidden=16):
        super().__init__(hidden=hidden)


class Raising(torch.utils.data.Dataset):
    def __len__(self):
        return 128

    def __getitem__(self, i):
        raise ValueError("corrupt record 7")


class Nothing(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter(())


class Late(torch.utils.data.Dataset):
    """Fails part-way through the run, after some steps were measured."""

    after = 640

    def __init__(self):
        self.inner = blobs(1024)
        self.seen = 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.seen += 1
        if self.seen > self.after:
            self.fail()
        return self.inner[i]

    def fail(self):
        raise ValueError("corrupt record")


class Killer(Late):
    """Its worker dies (SIGKILL, as the OOM killer does) after a few items."""

    after = 200

    def fail(self):
        if torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def hostile_spec(tmp_path: Path, *edits: tuple[str, str], extra: str = "") -> Path:
    """BASE_SPEC with edits, beside task.py and hostile.py."""
    body = BASE_SPEC
    for old, new in edits:
        assert old in body
        body = body.replace(old, new)
    spec = write_spec(tmp_path, body + extra)
    (tmp_path / "hostile.py").write_text(HOSTILE_PY)
    return spec


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error(res: object, code: int) -> str:
    """The single `error:` line of a failed command (exit code `code`, nothing else on stderr, no traceback)."""
    assert res.exit_code == code, (res.exit_code, res.stderr, res.exception)
    assert isinstance(res.exception, SystemExit), res.exception  # not a crash that CliRunner caught
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    return lines[0]


def assert_one_run(out: Path, *, has: set[str]) -> dict:
    """`out` holds exactly these outputs of one run, and `plot`/`export` read them."""
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == has
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary or lock file left behind
    data = json.loads((out / "range_test.json").read_text())
    res = invoke("plot", out, "--out", out.parent / f"{out.name}-check.png")
    assert res.exit_code == 0, res.stderr
    if "schedule.yaml" in has:
        res = invoke("export", out, "--out", "-")
        assert res.exit_code == 0, res.stderr
    return data


def run_cli(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (signal dispositions, rlimits, locks held by another process)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "clrfind", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=240, **kwargs,
    )  # fmt: skip


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


# ============================================================================================================
# Outputs
# ============================================================================================================


def _fail_writes_of(monkeypatch: pytest.MonkeyPatch, names: set[str], code: int = errno.ENOSPC) -> None:
    """The disk fills when these files are written (and only then)."""
    real = fileio._stage

    def stage(path: Path, payload: bytes) -> Path:
        if path.name in names:
            raise OSError(code, os.strerror(code), str(path))
        return real(path, payload)

    monkeypatch.setattr(fileio, "_stage", stage)


def test_disk_full_after_the_results_names_what_was_written(tmp_path: Path, monkeypatch) -> None:
    spec, out = hostile_spec(tmp_path), tmp_path / "run"
    _fail_writes_of(monkeypatch, {"range_test.png"})
    line = one_error(invoke("range-test", spec, "--out", out, "-q", "--no-verify-bounds"), 1)
    assert (
        "wrote range_test.json, schedule.yaml; could not write range_test.png (No space left on device)"
        in line
    )
    assert "free some disk space" in line
    monkeypatch.undo()
    assert_one_run(out, has={"range_test.json", "schedule.yaml"})


def test_disk_full_for_the_results_keeps_the_previous_run(tmp_path: Path, monkeypatch) -> None:
    spec, out = hostile_spec(tmp_path), tmp_path / "run"
    assert invoke("range-test", spec, "--out", out, "-q", "--no-verify-bounds").exit_code == 0
    before = (out / "range_test.json").read_text()
    _fail_writes_of(monkeypatch, NAMES)
    line = one_error(invoke("range-test", spec, "--out", out, "-q", "--steps", "30"), 1)
    assert "wrote nothing; could not write range_test.json, range_test.png, schedule.yaml" in line
    assert "the folder keeps the previous run's files" in line
    monkeypatch.undo()
    assert (out / "range_test.json").read_text() == before
    assert_one_run(out, has=NAMES)


def test_a_run_that_failed_and_could_not_save_says_both(tmp_path: Path, monkeypatch) -> None:
    """The run's own failure stays the error and the exit code; the files' fate is added to its line."""
    spec, out = (
        hostile_spec(tmp_path, ("task.py:blobs, kwargs: {n: 1024}", "hostile.py:Late")),
        tmp_path / "run",
    )
    _fail_writes_of(monkeypatch, NAMES)
    line = one_error(invoke("range-test", spec, "--out", out, "-q", "--no-verify-bounds"), 1)
    assert "corrupt record" in line and "the outputs were not all saved" in line
    assert "could not write range_test.json" in line
    monkeypatch.undo()
    assert not out.exists() or not {p.name for p in out.iterdir() if not p.name.startswith(".")}


def test_disk_quota_on_the_schedule(tmp_path: Path, monkeypatch) -> None:
    spec, out = hostile_spec(tmp_path), tmp_path / "run"
    _fail_writes_of(monkeypatch, {"schedule.yaml"}, errno.EDQUOT)
    line = one_error(invoke("range-test", spec, "--out", out, "-q", "--no-verify-bounds"), 1)
    assert "could not write schedule.yaml (Disk quota exceeded)" in line
    monkeypatch.undo()
    assert_one_run(out, has={"range_test.json", "range_test.png"})


def test_a_real_file_size_limit_is_reported_not_fatal(tmp_path: Path) -> None:
    """ulimit -f: the write fails with EFBIG (Python ignores SIGXFSZ, which would kill it), and is reported."""
    spec, out = hostile_spec(tmp_path), tmp_path / "run"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))  # results ~7 kB, the plot ~200 kB

    proc = run_cli("range-test", spec, "--out", out, "-q", "--no-verify-bounds", preexec_fn=limit)
    line = one_error_line(proc, 1)
    assert "could not write range_test.png (File too large)" in line and "ulimit -f" in line
    assert_one_run(out, has={"range_test.json", "schedule.yaml"})


def test_a_rerun_without_bounds_removes_the_old_schedule(tmp_path: Path) -> None:
    spec, out = hostile_spec(tmp_path), tmp_path / "run"
    assert invoke("range-test", spec, "--out", out, "-q", "--no-verify-bounds").exit_code == 0
    assert (out / "schedule.yaml").exists()
    res = invoke("range-test", spec, "--out", out, "-q", "--steps", "4")
    assert res.exit_code == 0 and "suggested: no reliable bounds" in res.stdout
    data = assert_one_run(out, has={"range_test.json", "range_test.png"})
    assert data["planned_steps"] == 4


def _hold(folder: Path) -> subprocess.Popen[str]:
    """Another process holding `folder`'s lock, as a running clrfind does."""
    code = (
        "import sys; from pathlib import Path; from clrfind.fileio import folder_lock\n"
        "folder = Path(sys.argv[1]); folder.mkdir(parents=True, exist_ok=True)\n"
        "with folder_lock(folder):\n    print('held', flush=True); sys.stdin.read()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("command", ["range-test", "sweep"])
def test_a_second_run_into_a_busy_folder_is_refused(tmp_path: Path, command: str) -> None:
    spec, out = hostile_spec(tmp_path), tmp_path / "run"
    holder = _hold(out)
    try:
        extra = ["--set", "optimizer.kwargs.momentum=0.8,0.9"] if command == "sweep" else []
        line = one_error(invoke(command, spec, "--out", out, "-q", *extra), 2)
        assert f"{out}: another clrfind run is writing into this folder (pid {holder.pid})" in line
        assert "pass another --out" in line
        assert {p.name for p in out.iterdir()} == {fileio.LOCK_NAME}  # nothing of the refused run
    finally:
        holder.communicate("")
    assert not out.joinpath(fileio.LOCK_NAME).exists()  # the holder cleaned up after itself


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    spec, out = hostile_spec(tmp_path), tmp_path / "run"
    holder = _hold(out)
    holder.kill()  # SIGKILL: no cleanup, the lock file stays with its pid
    holder.wait()
    assert out.joinpath(fileio.LOCK_NAME).read_text().strip() == str(holder.pid)
    res = invoke("range-test", spec, "--out", out, "-q", "--no-verify-bounds")
    assert res.exit_code == 0, res.stderr
    assert_one_run(out, has=NAMES)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    res = invoke("range-test", hostile_spec(tmp_path), "--out", out, "-q", "--no-verify-bounds")
    assert res.exit_code == 0, res.stderr
    return out


@pytest.mark.parametrize("form", ["existing", "slash"])
def test_export_out_to_a_folder_writes_the_default_name_in_it(
    run_dir: Path, tmp_path: Path, form: str
) -> None:
    folder = tmp_path / "exports"
    if form == "existing":
        folder.mkdir()
    res = invoke("export", run_dir, "--out", f"{folder}/" if form == "slash" else folder, "--format", "json")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == f"schedule: {folder / 'schedule.json'}"
    assert json.loads((folder / "schedule.json").read_text())["scheduler"]["target"].endswith("CyclicLR")


def test_plot_out_to_a_folder_writes_the_default_name_in_it(run_dir: Path, tmp_path: Path) -> None:
    res = invoke("plot", run_dir, "--out", f"{tmp_path / 'plots'}/")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "plots" / "range_test.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_out_under_a_file_is_one_error(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "FILE").write_text("not a folder")
    line = one_error(invoke("plot", run_dir, "--out", tmp_path / "FILE" / "x.png"), 1)
    assert (
        f"{tmp_path / 'FILE' / 'x.png'}: cannot write the file" in line and "is a file, not a folder" in line
    )


def test_export_out_under_a_file_is_one_error(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "FILE").write_text("not a folder")
    line = one_error(invoke("export", run_dir, "--out", tmp_path / "FILE" / "s.yaml"), 1)
    assert "cannot write the file" in line


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_files_respect_the_umask(tmp_path: Path, umask: int) -> None:
    spec, out = hostile_spec(tmp_path), tmp_path / "run"
    old = os.umask(umask)
    try:
        res = invoke("range-test", spec, "--out", out, "-q", "--no-verify-bounds")
        assert res.exit_code == 0, res.stderr
        res = invoke("export", out, "--out", tmp_path / "s.yaml")
    finally:
        os.umask(old)
    assert res.exit_code == 0
    for path in [*out.iterdir(), tmp_path / "s.yaml"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def _tagged_sweep(tmp_path: Path, values: str) -> tuple[object, Path]:
    spec = hostile_spec(tmp_path, ("task.py:Net", "hostile.py:Tagged"), ("steps: 60", "steps: 20"))
    out = tmp_path / "deep" / "sweep"
    res = invoke("sweep", spec, "--out", out, "-q", "--set", f"model.kwargs.tag={values}")
    return res, out


def test_sweep_values_cannot_write_outside_the_sweep_folder(tmp_path: Path) -> None:
    res, out = _tagged_sweep(tmp_path, "../../x,/etc/evil,.hidden,..")
    assert res.exit_code == 0, res.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "deep" / "x").exists()
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["tag=", "tag=.._.._x", "tag=.hidden", "tag=_etc_evil"]
    sweep = json.loads((out / "sweep.json").read_text())
    for run in sweep["runs"]:
        assert (out / run["results"]).resolve().is_relative_to(out.resolve())
        assert_one_run((out / run["results"]).parent, has=NAMES)
    assert invoke("plot", out / "sweep.json").exit_code == 0


def test_sweep_values_equal_after_escaping_get_their_own_folders(tmp_path: Path) -> None:
    res, out = _tagged_sweep(tmp_path, "a/b,a_b,A_B,a_b")
    assert res.exit_code == 0, res.stderr
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["results"].split("/")[0] for r in sweep["runs"]] == [
        "tag=a_b",
        "tag=a_b~2",
        "tag=A_B~3",
        "tag=a_b~4",
    ]
    assert [r["label"] for r in sweep["runs"]] == ["tag=a/b", "tag=a_b", "tag=A_B", "tag=a_b"]
    assert all((out / r["results"]).exists() for r in sweep["runs"])


# ============================================================================================================
# Hostile or odd input
# ============================================================================================================

# Ten anchors, each a list of ten aliases of the one before: 10**10 values from 600 bytes (billion laughs).
BOMB = "x-bomb:\n" + "".join(
    f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}' if i else '0'] * 10)}]\n" for i in range(10)
)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        pytest.param(BOMB, "expands to more than 100,000 values", id="laughs"),
        pytest.param("step: &s {target: hostile.py:x, kwargs: {me: *s}}\n", "refers to a structure that contains it",
                     id="recursive-alias"),
        pytest.param("step: {target: task.py:dict_step, kwargs: {deep: " + "[" * 900 + "]" * 900 + "}}\n",
                     "nests deeper than 100 levels", id="900-deep"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["range-test", "check"])
def test_yaml_that_expands_or_recurses_is_refused_at_load(
    tmp_path: Path, extra: str, needle: str, command: str
) -> None:
    spec = hostile_spec(tmp_path, extra=extra)
    args = ["--out", tmp_path / "run"] if command == "range-test" else []
    started = time.perf_counter()
    line = one_error(invoke(command, spec, *args), 2)
    assert time.perf_counter() - started < 20
    assert line.startswith("error: spec.yaml: refused at line") and needle in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "edit", "needle"),
    [
        ([], ("seed: 0", f"seed: {2**64}"), "seed: must be less than 18446744073709551616, got 18446744073709551616"),
        (["--seed", str(10**30)], None, "seed (as the command line set it): must be less than 18446744073709551616"),
        (["--steps", "1000000000"], None,
         "range_test.steps (as the command line set it): must be at most 1000000, got 1000000000"),
        ([], ("steps: 60", "epochs: 100000000"), "range_test.epochs: must be at most 10000"),
        ([], ("batch_size: 64", "batch_size: 64\n  num_workers: 100000"), "data.num_workers: must be at most 512"),
        (["--seed", str(2**64 - 1), "--repeats", "2"], None, "needs seeds up to 18446744073709551616, past 2**64"),
    ],
)  # fmt: skip
def test_values_out_of_range_are_refused_at_load(tmp_path: Path, args: list[str], edit, needle: str) -> None:
    spec = hostile_spec(tmp_path, *([edit] if edit else []))
    line = one_error(invoke("range-test", spec, "--out", tmp_path / "run", *args), 2)
    assert needle in line
    assert not (tmp_path / "run" / "range_test.json").exists()


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("9" * 5000, "refused (a value cannot be read (ValueError: Exceeds the limit (4300"),
        ("'" + "x" * 1_000_000 + "'", "precision: expected one of fp32, bf16, fp16, got 'xxxx"),
        ("[" + ", ".join(["1"] * 50_000) + "]", "precision: expected one of fp32, bf16, fp16, got [1, 1, 1"),
    ],
    ids=["5000-digit int", "1 MB string", "50k-item list"],
)
def test_huge_values_are_never_printed_whole(tmp_path: Path, value: str, needle: str) -> None:
    spec = hostile_spec(tmp_path, extra=f"precision: {value}\n")
    line = one_error(invoke("check", spec), 2)
    assert needle in line and len(line) < 400


def _same_error(tmp_path: Path, dataset: str, code: int, needle: str) -> None:
    """check, --dry-run and range-test report a failing dataset in the same words."""
    spec = hostile_spec(tmp_path, ("task.py:blobs, kwargs: {n: 1024}", dataset))
    lines = [
        one_error(invoke("check", spec), code),
        one_error(invoke("range-test", spec, "--dry-run"), code),
        one_error(invoke("range-test", spec, "-q", "--out", tmp_path / "run"), code),
    ]
    assert needle in lines[0]
    assert lines[0] == lines[1] and lines[2].startswith(lines[0].split(" (")[0])


def test_a_dataset_that_raises_fails_check_like_a_run(tmp_path: Path) -> None:
    _same_error(tmp_path, "hostile.py:Raising", 1,
                "error: data.train 'hostile.py:Raising' raised ValueError at step 0: corrupt record 7")  # fmt: skip


def test_an_empty_iterable_fails_check_like_a_run(tmp_path: Path) -> None:
    _same_error(tmp_path, "hostile.py:Nothing", 2,
                "error: spec.yaml: data.train 'hostile.py:Nothing': the data loader yielded no batches")  # fmt: skip


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["range-test", "SPEC", "--bogus"], "No such option: --bogus"),
        (["range-test", "SPEC", "--min-lr", "1e-5x"], "Invalid value for '--min-lr'"),
        (["range-test", "SPEC", "--repeats", "0"], "Invalid value for '--repeats'"),
        (["range-test", "SPEC", "--mode", "log"], "'log' is not one of 'auto', 'linear', 'exp'"),
        (["export", "RUN", "--policy", "weekly"], "Invalid value for '--policy'"),
        # a mistyped choice names the one meant; typer's "Value error, " prefix says nothing to a user
        (
            ["export", "RUN", "--policy", "one_cycle"],
            "Invalid value for '--policy': 'one_cycle' is not one of",
        ),
        (["export", "RUN", "--policy", "onecycle"], "(did you mean 'one-cycle'?)"),
        (["export", "RUN", "--format", "YAML"], "(did you mean 'yaml'?)"),
        (
            ["export", "RUN", "--format", "toml"],
            "Invalid value for '--format': 'toml' is not one of 'yaml', 'json'",
        ),
        (["range-test"], "Missing argument"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (
            ["range-test", "SPEC", "--steps", "10", "--epochs", "2"],
            "--steps and --epochs give the test's length",
        ),
    ],
)
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    spec = hostile_spec(tmp_path)
    args = [str(spec) if a == "SPEC" else str(tmp_path) if a == "RUN" else a for a in args]
    line = one_error(invoke(*args), 2)
    assert needle in line and "╭" not in line


@pytest.mark.parametrize("path", ["folder", "nul", "long"])
def test_unusable_spec_paths_are_one_line(tmp_path: Path, path: str) -> None:
    given = {"folder": str(tmp_path), "nul": "spec\x00.yaml", "long": "x" * 5000 + ".yaml"}[path]
    line = one_error(invoke("range-test", given), 2)
    assert len(line) < 600 and "\x00" not in line


# ============================================================================================================
# Results files are data
# ============================================================================================================


def _edited(run_dir: Path, edit) -> Path:
    data = json.loads((run_dir / "range_test.json").read_text())
    edit(data)
    path = run_dir.parent / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_export_verify_refuses_to_call_what_a_results_file_names(run_dir: Path) -> None:
    path = _edited(run_dir, lambda d: d["optimizer"].update(target="builtins.print", kwargs={}))
    res = invoke("export", path, "--verify", "--out", "-")
    line = one_error(res, 2)
    assert (
        "optimizer.target 'builtins.print' is not a torch.optim class" in line and "--trust-results" in line
    )
    assert res.stdout == ""  # print was never called
    assert invoke("export", path, "--out", "-").exit_code == 0  # without --verify nothing is constructed


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('"max_lr": 1e999', "too large for a float"),
        ('"max_lr": Infinity', "non-finite number Infinity"),
        ('"base_lr": NaN', "non-finite number NaN"),
    ],
)
def test_non_finite_numbers_in_results_are_refused(run_dir: Path, text: str, needle: str) -> None:
    raw = (run_dir / "range_test.json").read_text()
    key = text.split(":")[0]
    bounds = raw.index('"bounds"')
    start = raw.index(key, bounds)
    end = raw.index(",", start)
    (run_dir / "range_test.json").write_text(raw[:start] + text + raw[end:])
    for command in ("export", "plot"):
        assert needle in one_error(invoke(command, run_dir, "--out", run_dir.parent / "x.png"), 2)


def test_export_refuses_bounds_that_are_not_positive(run_dir: Path) -> None:
    path = _edited(run_dir, lambda d: d["bounds"].update(base_lr=-2.0, max_lr=-1.0))
    line = one_error(invoke("export", path), 2)
    assert "bounds.base_lr is -2.0, not a positive finite learning rate" in line


def test_export_of_a_sweep_file_says_what_to_do(tmp_path: Path) -> None:
    res, out = _tagged_sweep(tmp_path, "a,b")
    assert res.exit_code == 0
    for given in (out / "sweep.json", out):
        line = one_error(invoke("export", given), 2)
        assert (
            "a sweep file" in line and "range_test.json of one of its runs" in line and "damaged" not in line
        )


# ============================================================================================================
# Blame the right code
# ============================================================================================================


@pytest.mark.parametrize(
    ("factory", "needle"),
    [
        ("int_loss", "returned int, not a loss tensor"),
        ("vector_loss", "returned a loss of shape (64,), not a scalar"),
        ("detached_loss", "returned a loss that does not require grad"),
    ],
)
def test_a_bad_loss_is_the_loss_fault(tmp_path: Path, factory: str, needle: str) -> None:
    spec = hostile_spec(tmp_path, ("torch.nn.CrossEntropyLoss", f"hostile.py:{factory}"))
    line = one_error(invoke("range-test", spec, "-q", "--out", tmp_path / "run"), 2)
    assert line.startswith(f"error: spec.yaml: loss.target 'hostile.py:{factory}' {needle}")
    assert "model" not in line.split("(")[0]


def test_a_killed_dataloader_worker_is_the_data_fault(tmp_path: Path) -> None:
    spec = hostile_spec(
        tmp_path, ("task.py:blobs, kwargs: {n: 1024}", "hostile.py:Killer"),
        ("batch_size: 64", "batch_size: 64\n  num_workers: 1\n  shuffle: false"),
    )  # fmt: skip
    out = tmp_path / "run"
    line = one_error(invoke("range-test", spec, "-q", "--out", out, "--no-verify-bounds"), 1)
    # torch reports the death as RuntimeError (its SIGCHLD handler, or its poll of the workers), or as the error of
    # the dead worker's pipe (EOFError, ConnectionResetError) when the main process reads it first: the data's fault
    # in every case.
    assert re.match(r"error: data\.train 'hostile\.py:Killer' raised \w+Error at step \d+", line), line
    assert "partial results saved" in line
    assert json.loads((out / "range_test.json").read_text())["stop_reason"] == "error"


@pytest.mark.parametrize("kwargs", ["", ", kwargs: {label_smoothing: 0.1}"])
def test_a_plain_loss_function_is_used_as_the_loss(tmp_path: Path, kwargs: str) -> None:
    spec = hostile_spec(tmp_path, ("{target: torch.nn.CrossEntropyLoss}",
                                   "{target: torch.nn.functional.cross_entropy" + kwargs + "}"))  # fmt: skip
    out = tmp_path / "run"
    res = invoke("range-test", spec, "-q", "--out", out, "--no-verify-bounds")
    assert res.exit_code == 0, res.stderr
    assert "suggested: base_lr" in res.stdout
    assert_one_run(out, has=NAMES)


def test_a_misspelt_kwarg_of_a_plain_loss_function_is_still_caught(tmp_path: Path) -> None:
    typo = "{target: torch.nn.functional.cross_entropy, kwargs: {label_smothing: 0.1}}"
    spec = hostile_spec(tmp_path, ("{target: torch.nn.CrossEntropyLoss}", typo))
    line = one_error(invoke("check", spec), 2)
    assert "loss.kwargs.label_smothing" in line and "did you mean 'label_smoothing'" in line


def test_a_checkpoint_that_does_not_fit_names_keys_and_shapes(tmp_path: Path) -> None:
    import torch

    spec = hostile_spec(tmp_path, ("kwargs: {hidden: 16}}", "kwargs: {hidden: 16}, checkpoint: w.pt}"))
    state = {
        f"body.{k}": torch.zeros(32, 2) if k == "0.weight" else torch.zeros(2) for k in ("0.weight", "2.bias")
    }
    state["head.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pt")
    line = one_error(invoke("check", spec), 2)
    assert "w.pt does not fit the model: 2 missing keys (body.0.bias, body.2.weight)" in line
    assert "1 unexpected keys (head.weight)" in line
    assert "1 shape mismatches (body.0.weight [32, 2] vs [16, 2] in the model)" in line


def test_a_results_rename_that_fails_replaces_nothing(tmp_path: Path, monkeypatch) -> None:
    """The results decide also at the rename: a failure there leaves the previous run's files, and no temp file."""
    paths = [tmp_path / name for name in sorted(NAMES)]
    for path in paths:
        path.write_text("old")
    real = fileio._commit

    def commit(tmp: Path, path: Path) -> None:
        if path.name == "range_test.json":
            os.unlink(tmp)
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real(tmp, path)

    monkeypatch.setattr(fileio, "_commit", commit)
    with pytest.raises(
        fileio.OutputError, match=r"wrote nothing; could not write range_test\.json .*Permission"
    ):
        fileio.write_together({p: "new" for p in paths}, first=tmp_path / "range_test.json", stale=paths)
    assert [p.read_text() for p in paths] == ["old"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)
