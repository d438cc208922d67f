"""Issue 4: the range test must cost no more than the training steps it runs.

Runs, side by side in one process and alternating round by round, the same model / data / optimizer / seed /
LR ladder through

  raw     a plain PyTorch loop that sets the LR each step and never reads the loss (the floor),
  control the same raw loop again, timed as a contender (A/A): the ratio that noise alone produces,
  engine  clrfind.engine.run_loop (the range-test loop itself),
  api     clrfind.range_test (the public call: state save/restore, the loop, analysis, the result object),
  tlf     torch-lr-finder 0.2.2: LRFinder(...) + range_test(num_iter=steps, step_mode="linear"),

and prints the median wall time per step, its spread over the rounds, and the per-round paired ratios vs raw
(their median, and their geometric mean with a 95% interval, next to the control's).
It also reports where each tool stops on a diverging ladder, peak memory per contender (each in a fresh
subprocess), host syncs per step on CUDA, `clrfind --help` against `import torch`, and, with --instr-models,
instructions per step counted by valgrind (deterministic where wall time on a shared machine is not).

    .venv/bin/python bench/overhead.py                        # CPU, mlp,cnn,transformer, 300 steps, 7 rounds
    .venv/bin/python bench/overhead.py --device cuda --steps 1000 --markdown bench/overhead.md
    .venv/bin/python bench/overhead.py --models mlp --profile  # + cProfile of the engine loop on the MLP
    .venv/bin/python bench/overhead.py --instr-models tiny,mlp  # + instructions per step under valgrind (~7 min)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import importlib
import io
import json
import math
import os
import pstats
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python bench/overhead.py` from anywhere, without installing clrfind

CONTENDERS = ("raw", "control", "engine", "api", "tlf")
# The control is the raw loop timed a second time, as a contender: its ratio to raw is what this machine's noise
# and the protocol alone produce, the yardstick for reading the other ratios.
CONTROL = "control"
LABELS = {
    "raw": "raw PyTorch loop (floor)",
    "control": "raw loop again (A/A noise control)",
    "engine": "clrfind engine.run_loop",
    "api": "clrfind.range_test (API)",
    "tlf": "torch-lr-finder range_test",
}
# Data kept for the cycled loader; the loader restarts when a run is longer (the same for every contender).
DATA_BYTES_CAP = 64 * 2**20


# -- models and data


class MLP(nn.Module):
    """Two hidden layers of 64: per-step framework overhead dominates, the worst case for a range test."""

    def __init__(self, features: int = 32, hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """A CIFAR-sized conv net (3x32x32 -> 10 classes)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 8 * 8, 128),
            nn.ReLU(),
            nn.Linear(128, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallTransformer(nn.Module):
    """2-layer TransformerEncoder, d_model 64, classifying token sequences by their mean embedding."""

    def __init__(self, vocab: int = 100, d_model: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead=4, dim_feedforward=128, dropout=0.1, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


@dataclass(frozen=True)
class ModelCase:
    name: str
    build: Callable[[], nn.Module]
    batch_size: int
    make_inputs: Callable[[torch.Generator, int], torch.Tensor]
    describe: str


def _tiny() -> nn.Module:
    """Almost no compute: what a tool adds to each step shows up here in microseconds, not in noise."""
    return nn.Linear(16, 4)


def _tiny_inputs(g: torch.Generator, b: int) -> torch.Tensor:
    return torch.randn(b, 16, generator=g)


def _mlp_inputs(g: torch.Generator, b: int) -> torch.Tensor:
    return torch.randn(b, 32, generator=g)


def _cnn_inputs(g: torch.Generator, b: int) -> torch.Tensor:
    return torch.randn(b, 3, 32, 32, generator=g)


def _tok_inputs(g: torch.Generator, b: int) -> torch.Tensor:
    return torch.randint(0, 100, (b, 32), generator=g)


CASES = {
    "tiny": ModelCase("tiny", _tiny, 8, _tiny_inputs, "Linear(16,4), batch 8"),
    "mlp": ModelCase("mlp", MLP, 32, _mlp_inputs, "MLP 32-64-64-10, batch 32"),
    "cnn": ModelCase("cnn", SmallCNN, 64, _cnn_inputs, "CNN 2 conv + 2 fc, 3x32x32, batch 64"),
    "transformer": ModelCase(
        "transformer", SmallTransformer, 32, _tok_inputs, "TransformerEncoder 2x d64 h4, seq 32, batch 32"
    ),
}


class BatchList(Dataset):
    """Pre-made batches served by a DataLoader with batch_size=None: the loader type every tool accepts
    (torch-lr-finder insists on a DataLoader), without per-sample collation swamping the loop overhead."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches[i]


def make_loader(case: ModelCase, steps: int, device: torch.device, *, regression: bool = False) -> DataLoader:
    """Seeded synthetic data labelled by a fixed random teacher (its class, or its outputs for `regression`),
    pre-materialised on `device`."""
    g = torch.Generator().manual_seed(1234)
    probe = case.make_inputs(g, case.batch_size)
    per_batch = probe.element_size() * probe.numel() + 8 * case.batch_size
    n = max(2, min(steps, DATA_BYTES_CAP // per_batch))
    torch.manual_seed(99)
    teacher = case.build().eval()
    batches = []
    with torch.no_grad():
        for _ in range(n):
            x = case.make_inputs(g, case.batch_size)
            y = teacher(x) if regression else teacher(x).argmax(dim=-1)
            batches.append((x.to(device), y.to(device)))
    return DataLoader(BatchList(batches), batch_size=None, shuffle=False)


def fresh(
    case: ModelCase, lr0: float, device: torch.device, *, momentum: float = 0.9, regression: bool = False
) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
    """Identical initial weights and optimizer for every run (built outside the timed region)."""
    torch.manual_seed(0)
    model = case.build().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr0, momentum=momentum)
    loss_fn = (nn.MSELoss() if regression else nn.CrossEntropyLoss()).to(device)
    torch.manual_seed(1)  # dropout draws the same masks in every contender
    return model, opt, loss_fn


# -- contenders


@dataclass
class RunInfo:
    steps: int
    losses: list[float] | None = None
    detail: str = ""


def run_raw(
    model, loader, loss_fn, opt, lrs, device, *, record: list[float] | None = None, **_: Any
) -> RunInfo:
    """The floor: what any training loop pays. Reads the loss only if `record` asks (the reference curve)."""
    nb = device.type == "cuda"
    it = iter(loader)
    for lr in lrs.tolist():
        for g in opt.param_groups:
            g["lr"] = lr
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        x, y = x.to(device, non_blocking=nb), y.to(device, non_blocking=nb)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if record is not None:
            record.append(loss.item())
    return RunInfo(len(lrs), record)


def run_engine(model, loader, loss_fn, opt, lrs, device, **_: Any) -> RunInfo:
    from clrfind.engine import run_loop

    out = run_loop(model, loader, loss_fn, opt, lrs, device=device)
    if out.error is not None:
        raise out.error
    # The steps trained, not the curve's length: a diverged curve ends where the stop was confirmed.
    return RunInfo(out.steps_trained, out.losses.tolist(), f"{out.stop_reason}: {out.stop_detail}")


def run_api(model, loader, loss_fn, opt, lrs, device, **_: Any) -> RunInfo:
    import clrfind

    res = clrfind.range_test(
        model,
        loader,
        loss_fn,
        opt,
        min_lr=float(lrs[0]),
        max_lr=float(lrs[-1]),
        steps=len(lrs),
        mode="linear",
        device=device,
    )
    losses = [math.inf if v is None else v for v in res.losses]
    return RunInfo(len(res.losses), losses, f"{res.stop_reason}: {res.stop_detail}")


_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def run_tlf(model, loader, loss_fn, opt, lrs, device, *, diverge_th: float = 1e12, **_: Any) -> RunInfo:
    """torch-lr-finder as its README uses it; construction (it caches the state) is part of the cost.
    Its tqdm bar and prints go to /dev/null (still formatted, as they would be in a notebook)."""
    from torch_lr_finder import LRFinder

    with contextlib.redirect_stdout(_DEVNULL), contextlib.redirect_stderr(_DEVNULL):
        finder = LRFinder(model, opt, loss_fn, device=device)
        finder.range_test(
            loader,
            start_lr=float(lrs[0]),
            end_lr=float(lrs[-1]),
            num_iter=len(lrs),
            step_mode="linear",
            diverge_th=diverge_th,
        )
    n = len(finder.history["loss"])
    return RunInfo(n, None, "smoothed losses only (smooth_f=0.05)")


RUNNERS: dict[str, Callable[..., RunInfo]] = {
    "raw": run_raw,
    CONTROL: run_raw,
    "engine": run_engine,
    "api": run_api,
    "tlf": run_tlf,
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    name: str, case: ModelCase, loader: DataLoader, lrs: np.ndarray, device: torch.device
) -> tuple[float, float, int]:
    """One fresh run of a contender: (wall s, process CPU s, steps run). Setup is outside the clock.

    CPU time is reported next to wall time because a shared machine's other load inflates wall time at random,
    while the process's own CPU time (one torch thread) barely moves.
    """
    model, opt, loss_fn = fresh(case, float(lrs[0]), device)
    gc.collect()
    sync(device)
    c0, t0 = time.process_time(), time.perf_counter()
    info = RUNNERS[name](model, loader, loss_fn, opt, lrs, device)
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, info.steps


# -- timing


@dataclass
class Timing:
    per_step: dict[str, list[float]] = field(default_factory=dict)  # wall seconds per step, one per round
    cpu_per_step: dict[str, list[float]] = field(default_factory=dict)  # process CPU seconds per step
    steps: dict[str, int] = field(default_factory=dict)


def time_case(case: ModelCase, args: argparse.Namespace, device: torch.device, names: list[str]) -> Timing:
    lrs = np.linspace(args.min_lr, args.max_lr, args.steps)
    loader = make_loader(case, args.steps, device)
    warm = np.linspace(args.min_lr, args.max_lr, max(2, min(args.steps, 60)))
    for name in names:  # warm-up: allocator, kernels, lazy imports of each tool
        timed(name, case, loader, warm, device)
    t = Timing({n: [] for n in names}, {n: [] for n in names})
    rounds = args.tiny_rounds if case.name == "tiny" else args.rounds
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate so no tool always runs first
        for name in order:
            secs, cpu, steps = timed(name, case, loader, lrs, device)
            t.per_step[name].append(secs / steps)
            t.cpu_per_step[name].append(cpu / steps)
            t.steps[name] = steps
            if steps != args.steps:
                print(
                    f"  note: {name} stopped after {steps}/{args.steps} steps on the timed curve",
                    file=sys.stderr,
                )
    return t


def paired_ratios(t: Timing, name: str, *, cpu: bool = False) -> list[float]:
    """Per-round ratio to the raw loop of the same round: slow drift of the machine cancels out."""
    d = t.cpu_per_step if cpu else t.per_step
    return [a / b for a, b in zip(d[name], d["raw"], strict=True)]


def geo_ratio(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean of the paired ratios with its 95% interval (Student t on the log ratios).

    The median of a few rounds says little on a machine whose rounds spread 2-4x; the interval says how far the
    estimate can be trusted, and the A/A control's interval shows what no difference at all looks like.
    """
    from scipy.stats import t as student_t

    logs = np.log(np.asarray(ratios, dtype=float))
    mean = float(logs.mean())
    if logs.size < 2:
        return math.exp(mean), math.nan, math.nan
    half = float(student_t.ppf(0.975, logs.size - 1) * logs.std(ddof=1) / math.sqrt(logs.size))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def fmt_geo(ratios: list[float]) -> str:
    g, lo, hi = geo_ratio(ratios)
    return f"{g:.3f} [{lo:.3f}..{hi:.3f}]"


# -- divergence


def divergence_point(losses: list[float], factor: float = 4.0, persist: int = 1) -> int | None:
    """First step starting `persist` consecutive losses that are non-finite or > factor x the minimum so far.

    persist=1 is the issue's definition (a one-step spike counts); persist=3 is "stays diverged".
    """
    best = math.inf
    mins = []
    for v in losses:
        if math.isfinite(v):
            best = min(best, v)
        mins.append(best)

    def bad(j: int, ref: float) -> bool:
        return not math.isfinite(losses[j]) or (ref > 0 and losses[j] > factor * ref)

    for i in range(len(losses)):
        if all(bad(j, mins[i]) for j in range(i, min(i + persist, len(losses)))):
            return i
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    describe: str
    momentum: float
    regression: bool


SCENARIOS = (
    Scenario(
        "ragged",
        "MLP classifier, CrossEntropy, SGD momentum 0.9: spikes, then a ragged high plateau",
        0.9,
        False,
    ),
    Scenario("blow-up", "MLP regression, MSE, plain SGD: a clean exponential blow-up to inf/NaN", 0.0, True),
)


def diverge_case(
    scn: Scenario, args: argparse.Namespace, device: torch.device, names: list[str]
) -> dict[str, Any]:
    """Where each tool stops on a ladder that diverges, against a reference curve that reads every loss."""
    case = CASES["mlp"]
    lrs = np.linspace(args.diverge_min_lr, args.diverge_max_lr, args.steps)
    loader = make_loader(case, args.steps, device, regression=scn.regression)

    def build() -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
        return fresh(case, float(lrs[0]), device, momentum=scn.momentum, regression=scn.regression)

    model, opt, loss_fn = build()
    ref: list[float] = []
    run_raw(model, loader, loss_fn, opt, lrs, device, record=ref)
    nonfinite = next((i for i, v in enumerate(ref) if not math.isfinite(v)), None)
    points = {
        "spike": divergence_point(ref),
        "sustained": divergence_point(ref, persist=3),
        "nonfinite": nonfinite,
    }
    rows = {}
    for name in names:
        if name == "raw":
            continue
        model, opt, loss_fn = build()
        kw = {"diverge_th": 5.0} if name == "tlf" else {}  # its own default rule
        info = RUNNERS[name](model, loader, loss_fn, opt, lrs, device, **kw)
        same = None
        if info.losses is not None and info.steps:
            a = np.asarray(info.losses[: info.steps])
            b = np.asarray(ref[: a.size])
            same = bool(np.allclose(a, b, rtol=1e-5, atol=0, equal_nan=True))
        rows[name] = {"steps": info.steps, "detail": info.detail, "same_curve": same}
    return {"lrs": lrs, "ref": ref, "points": points, "rows": rows}


# -- memory (fresh subprocess per contender)


def _hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


def child_memory(cfg: dict[str, Any]) -> dict[str, Any]:
    """In a fresh interpreter: import every tool (same baseline for all), build, reset the peak, run once."""
    torch.set_num_threads(cfg["threads"])
    for module in ("torch_lr_finder", "clrfind.engine", "clrfind.api"):
        with contextlib.suppress(
            ImportError
        ):  # a tool that cannot import fails in its own run, not in others'
            importlib.import_module(module)

    device = torch.device(cfg["device"])
    case = CASES[cfg["model"]]
    lrs = np.linspace(cfg["min_lr"], cfg["max_lr"], cfg["steps"])
    loader = make_loader(case, cfg["steps"], device)
    model, opt, loss_fn = fresh(case, float(lrs[0]), device)
    gc.collect()
    out: dict[str, Any] = {}
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base_alloc = torch.cuda.memory_allocated(device)
    try:  # Linux >= 4.0: reset VmHWM, so the peak is the run's own, not an import transient's
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    rss_before = _rss_kib()
    RUNNERS[cfg["contender"]](model, loader, loss_fn, opt, lrs, device)
    sync(device)
    peak = _hwm_kib() if hwm_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.update(rss_before_mib=rss_before / 1024, peak_mib=peak / 1024, delta_mib=(peak - rss_before) / 1024)
    out["hwm_reset"] = hwm_reset
    if device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["cuda_delta_mib"] = (torch.cuda.max_memory_allocated(device) - base_alloc) / 2**20
    return out


def measure_memory(case: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = {
        "model": case,
        "contender": name,
        "device": args.device,
        "threads": args.threads,
        "steps": args.steps,
        "min_lr": args.min_lr,
        "max_lr": args.max_lr,
    }
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(cfg)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- host syncs (CUDA)

_SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def count_syncs(case: ModelCase, name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Host syncs of one run, two ways: torch's sync debug mode (a warning per synchronizing op it knows,
    e.g. .item(), pageable DtoH copies) and the profiler (blocking CUDA runtime calls, DtoH copies). On CPU
    the profiler still runs (counts are 0), so this path is exercised everywhere."""
    lrs = np.linspace(args.min_lr, args.max_lr, args.steps)
    loader = make_loader(case, args.steps, device)
    model, opt, loss_fn = fresh(case, float(lrs[0]), device)
    RUNNERS[name](model, loader, loss_fn, opt, lrs[:4], device)  # warm-up outside the count
    model, opt, loss_fn = fresh(case, float(lrs[0]), device)
    out: dict[str, Any] = {}
    debug_mode = device.type == "cuda" and hasattr(torch.cuda, "set_sync_debug_mode")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if debug_mode:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            info = RUNNERS[name](model, loader, loss_fn, opt, lrs, device)
        finally:
            if debug_mode:
                torch.cuda.set_sync_debug_mode("default")
        sync(device)  # ours, outside the counted window
    steps = max(1, info.steps)
    if debug_mode:
        n = sum("synchroniz" in str(w.message).lower() for w in caught)
        out["debug_mode_per_step"] = n / steps
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    model, opt, loss_fn = fresh(case, float(lrs[0]), device)
    with profile(activities=activities) as prof:
        info = RUNNERS[name](model, loader, loss_fn, opt, lrs, device)
        sync(device)
    steps = max(1, info.steps)
    names = [e.name for e in prof.events()]
    # The final sync() above is ours, not the tool's.
    blocking = sum(names.count(c) for c in _SYNC_CALLS) - (1 if device.type == "cuda" else 0)
    dtoh = sum(1 for nm in names if nm.startswith("Memcpy DtoH"))
    out["blocking_calls_per_step"] = max(0, blocking) / steps
    out["dtoh_copies_per_step"] = dtoh / steps
    out["steps"] = info.steps
    return out


# -- instructions (valgrind)

# Two ladder lengths per contender: their difference cancels every one-off cost (imports, the run's setup and
# teardown), leaving the instructions of one training step. --instr-steps overrides them for slow models.
INSTR_STEPS = (100, 500)
# About how much slower a step runs under callgrind than natively (tiny and the MLP: ~50x).
VALGRIND_SLOWDOWN = 50


def child_instructions(cfg: dict[str, Any]) -> None:
    """Under callgrind: each contender runs a short and a long ladder, each between two os.getppid() calls,
    which the parent's `--dump-before=getppid` turns into one profile dump per run."""
    import clrfind.engine

    torch.set_num_threads(1)
    # The engine sizes its CPU chunks by step time and steps run ~50x slower under valgrind: stretching the
    # interval as much gives each model the chunks it gets at normal speed (the longest for tiny's 0.35 ms steps,
    # the shortest for the CNN's 35 ms ones), not the short chunks a slow step would get.
    clrfind.engine._CALLBACK_INTERVAL_S *= VALGRIND_SLOWDOWN
    short, long_ = cfg["steps"]
    device = torch.device("cpu")
    case = CASES[cfg["model"]]
    runners = {**RUNNERS, **ablation_stages()}
    loader = make_loader(case, long_, device)
    warm = np.linspace(cfg["min_lr"], cfg["max_lr"], min(60, short))
    for name in cfg["names"]:  # lazy imports, allocator and kernel caches: outside the counted runs
        model, opt, loss_fn = fresh(case, float(warm[0]), device)
        runners[name](model, loader, loss_fn, opt, warm, device)
    for name in cfg["names"]:
        for steps in (short, long_):
            lrs = np.linspace(cfg["min_lr"], cfg["max_lr"], steps)
            model, opt, loss_fn = fresh(case, float(lrs[0]), device)
            gc.collect()
            os.getppid()  # dump: everything before this run
            info = runners[name](model, loader, loss_fn, opt, lrs, device)
            os.getppid()  # dump: this run
            if info.steps != steps:
                raise RuntimeError(f"{name} stopped after {info.steps}/{steps} steps")


def _dump_total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"{path}: no totals line")


def measure_instructions(model: str, names: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Instructions per training step of each contender, counted by valgrind's callgrind in one process.

    Wall time on a shared 2-core VM varies 2-4x between rounds; the instruction count of the same work does
    not (one torch thread, one OpenBLAS thread, a fixed hash seed). It leaves out what instructions cannot see
    (cache misses, stalls), so it complements the wall figures rather than replacing them.
    """
    cfg = {
        "model": model, "names": names, "min_lr": args.min_lr, "max_lr": args.max_lr, "steps": args.instr_steps
    }  # fmt: skip
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = [
            "valgrind", "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={out}",
            sys.executable, str(Path(__file__).resolve()), "--_instr-child", json.dumps(cfg),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"valgrind child failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        # Dump 2k (1-based) holds the k-th run: the odd ones are what ran between runs.
        totals = [_dump_total(Path(f"{out}.{i}")) for i in range(1, 4 * len(names) + 1)]
    short, long_ = args.instr_steps
    return {name: (totals[4 * j + 3] - totals[4 * j + 1]) / (long_ - short) for j, name in enumerate(names)}


def instructions_section(args: argparse.Namespace, verdicts: list[str]) -> str:
    """Per-step instruction counts for every model in --instr-models, the models in parallel subprocesses."""
    if shutil.which("valgrind") is None:
        return "\n## Instructions per step\n\nSkipped: valgrind is not installed.\n"
    contenders = [n for n in CONTENDERS if n != CONTROL]  # the control's count would be the raw loop's
    plan = {
        m: [
            n
            for n in ([*ablation_stages(), "api", "tlf"] if m == "tiny" else contenders)
            if n not in args.skip
        ]
        for m in args.instr_models
    }
    print(f"counting instructions under valgrind ({', '.join(plan)}) ...", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(
            zip(plan, pool.map(lambda kv: measure_instructions(*kv, args), plan.items()), strict=True)
        )
    out = [
        "",
        "## Instructions per step (valgrind callgrind; deterministic, unlike wall time here)",
        "",
        f"Each contender runs {args.instr_steps[0]} and {args.instr_steps[1]} steps in one process under "
        "`valgrind --tool=callgrind` (one torch and one OpenBLAS thread); per step = the difference / "
        f"{args.instr_steps[1] - args.instr_steps[0]}. On tiny, the ablation stages add the engine's extras to the raw "
        "loop one by one.",
        "",
        "| model | contender | instructions/step | extra vs raw | ratio vs raw |",
        "|---|---|---:|---:|---:|",
    ]
    for model, per in counts.items():
        raw = per["raw"]
        for name, n in per.items():
            if name == "raw":
                out.append(f"| {model} | {LABELS['raw']} | {n:,.0f} | | |")
                continue
            out.append(f"| {model} | {LABELS.get(name, name)} | {n:,.0f} | {n - raw:+,.0f} | {n / raw:.3f} |")
        engine = per.get("engine", per.get("engine.run_loop"))
        if engine is not None:
            msg = f"{model} (instructions): engine/raw {engine / raw:.3f} <= 1.03: "
            msg += "MET" if engine / raw <= 1.03 else "MISSED"
            if "tlf" in per:
                msg += f"; < tlf/raw ({per['tlf'] / raw:.3f}): {'MET' if engine < per['tlf'] else 'MISSED'}"
            verdicts.append(msg)
    return "\n".join(out) + "\n"


# -- startup


def cli_command() -> list[str]:
    exe = Path(sys.executable).with_name("clrfind")
    return [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "clrfind", "--help"]


def median_wall(cmd: list[str], n: int = 5) -> tuple[float, list[float]]:
    subprocess.run(cmd, capture_output=True, cwd=REPO, check=False)  # warm the page cache
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, cwd=REPO, check=False)
        walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-300:]}")
    return statistics.median(walls), walls


# -- profile


def _staged_loop(move: bool, copy: bool, monitor: bool) -> Callable[..., RunInfo]:
    """The raw loop plus, one by one, the engine's per-step extras: clrfind's batch mover, the engine's loss
    reader (`_HostLosses`: a float per step on CPU, a chunked non-blocking copy on CUDA), and
    DivergenceMonitor.update on each chunk."""
    from clrfind.analysis import DivergenceMonitor
    from clrfind.engine import _HostLosses, choose_sync_every, move_to_device

    def run(model, loader, loss_fn, opt, lrs, device, **_: Any) -> RunInfo:
        every = choose_sync_every(device, None)
        mon = DivergenceMonitor(total_steps=len(lrs))
        host = _HostLosses(device)
        losses: list[float] = []
        it = iter(loader)
        for lr in lrs.tolist():
            for g in opt.param_groups:
                g["lr"] = lr
            try:
                x, y = next(it)
            except StopIteration:
                it = iter(loader)
                x, y = next(it)
            if move:
                x, y = move_to_device([x, y], device, non_blocking=device.type == "cuda")
            else:
                x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if copy:
                if not losses and not host.chunk:
                    host.fit(loss)  # as the engine does on its first step
                host.add(loss)
                if len(host.chunk) >= every:
                    host.flush()
                    for values in host.ready():
                        losses.extend(values)
                        if monitor:
                            mon.update(values)
        return RunInfo(len(lrs))

    return run


def _engine_stubbed(*parts: str) -> Callable[..., RunInfo]:
    """engine.run_loop with some of its per-step extras replaced by no-ops (this process only, restored after):
    what each costs inside the real loop, where caches are cold."""
    import clrfind.engine as engine
    from clrfind.analysis import DivergenceMonitor

    class NoRead(engine._HostLosses):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.read = lambda loss: 1.0

        def fit(self, loss: torch.Tensor) -> Callable[[torch.Tensor], Any]:
            return self.read

    stubs: dict[str, tuple[Any, str, Any]] = {
        "DivergenceMonitor.update": (DivergenceMonitor, "update", lambda self, losses: False),
        "move_to_device": (engine, "move_to_device", lambda batch, device, **_: batch),
        "the loss read": (engine, "_HostLosses", NoRead),
    }

    def run(*a: Any, **k: Any) -> RunInfo:
        chosen = [stubs[p] for p in parts]
        saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in chosen]
        for obj, attr, fake in chosen:
            setattr(obj, attr, fake)
        try:
            return run_engine(*a, **k)
        finally:
            for obj, attr, value in saved:
                setattr(obj, attr, value)

    return run


def ablation_stages() -> dict[str, Callable[..., RunInfo]]:
    """The raw loop plus each engine extra in turn, and the engine with each extra (then all three) stubbed."""
    extras = ("DivergenceMonitor.update", "move_to_device", "the loss read")
    return {
        "raw": run_raw,
        "raw + move_to_device": _staged_loop(True, False, False),
        "raw + move_to_device + loss reader": _staged_loop(True, True, False),
        "raw + move_to_device + loss reader + DivergenceMonitor.update": _staged_loop(True, True, True),
        **{f"engine.run_loop with {part} stubbed": _engine_stubbed(part) for part in extras},
        "engine.run_loop with all three stubbed": _engine_stubbed(*extras),
        "engine.run_loop": run_engine,
    }


def ablate_engine(args: argparse.Namespace, device: torch.device) -> str:
    """Where the engine's per-step cost comes from, measured in place.

    Inside a training loop caches are cold and Python costs several times its microbenchmark, so: the raw loop
    plus each extra in turn, and the engine with each extra (then all three) patched to a no-op (this process
    only), on the tiny model, alternating.
    """
    case = CASES["tiny"]
    lrs = np.linspace(args.min_lr, args.max_lr, args.steps)
    loader = make_loader(case, args.steps, device)
    stages = ablation_stages()
    RUNNERS.update(stages)
    names = list(stages)
    t = Timing({n: [] for n in names}, {n: [] for n in names})
    for r in range(args.tiny_rounds + 1):  # round 0 is the warm-up
        for name in names[r % len(names) :] + names[: r % len(names)]:
            secs, cpu, steps = timed(name, case, loader, lrs, device)
            if r:
                t.per_step[name].append(secs / steps)
                t.cpu_per_step[name].append(cpu / steps)
    out = [
        "",
        f"### In-place ablation on tiny ({args.tiny_rounds} rounds x {args.steps} steps, alternating)",
        "",
        "| variant | p10 us/step | extra vs raw (p10) | median us/step | extra vs raw (paired median) "
        "| geo-mean ratio [95%] |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        extra_low = p10(t.per_step[name]) - p10(t.per_step["raw"])
        geo = "" if name == "raw" else fmt_geo(paired_ratios(t, name))
        out.append(
            f"| {name} | {fmt_us(p10(t.per_step[name]))} | {extra_low * 1e6:+.1f} "
            f"| {fmt_us(statistics.median(t.per_step[name]))} | {median_extra(t, name) * 1e6:+.1f} | {geo} |"
        )
    return "\n".join(out) + "\n"


def profile_engine(args: argparse.Namespace, device: torch.device, top: int = 18) -> str:
    """cProfile of the engine on the MLP: where clrfind's own per-step time goes (cumulative, per step).

    cProfile inflates Python-heavy code, so read these as a ranking; the ablation and microbenchmarks give
    wall numbers.
    """
    case = CASES["mlp"]
    lrs = np.linspace(args.min_lr, args.max_lr, args.steps)
    loader = make_loader(case, args.steps, device)
    model, opt, loss_fn = fresh(case, float(lrs[0]), device)
    run_engine(model, loader, loss_fn, opt, lrs[:20], device)
    model, opt, loss_fn = fresh(case, float(lrs[0]), device)
    pr = cProfile.Profile()
    pr.enable()
    info = run_engine(model, loader, loss_fn, opt, lrs, device)
    pr.disable()
    st = pstats.Stats(pr).stats  # type: ignore[attr-defined]
    n = info.steps
    text = io.StringIO()
    text.write(
        f"\n### cProfile of engine.run_loop on mlp ({n} steps): clrfind and numpy functions\n\n"
        "| cum us/step | own us/step | calls/step | function |\n|---:|---:|---:|---|\n"
    )
    keep = ("clrfind", "numpy", "warnings")
    mine = [(k, v) for k, v in st.items() if any(w in k[0] or w in k[2] for w in keep)]
    ranked = sorted(mine, key=lambda kv: kv[1][3], reverse=True)[:top]
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in ranked:
        where = f"{Path(file).name}:{line}({fn})" if line else fn
        text.write(f"| {ct / n * 1e6:.2f} | {tt / n * 1e6:.2f} | {nc / n:.2f} | `{where}` |\n")
    return text.getvalue()


def micro_costs(device: torch.device, reps: int = 2000) -> str:
    """Wall cost of the engine's per-step extras outside any profiler (cProfile inflates Python code).

    Each item is timed in 5 batches of `reps` calls and the fastest batch kept: the machine's other load only
    ever adds time.
    """
    from clrfind.analysis import DivergenceMonitor
    from clrfind.engine import _Batches, _HostLosses, choose_sync_every, move_to_device

    k = choose_sync_every(device, None)
    g = torch.Generator().manual_seed(0)
    batch = [torch.randn(32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)]
    loss = torch.tensor(2.3, device=device)
    loader = DataLoader(BatchList([(batch[0], batch[1])] * 64), batch_size=None)
    rows = []

    def bench(label: str, fn: Callable[[], Any], per: float = 1.0) -> None:
        fn()
        best = math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            best = min(best, time.perf_counter() - t0)
        rows.append((label, best / reps * 1e6 / per))

    bench(
        "engine: move_to_device(list of 2 tensors)", lambda: move_to_device(batch, device, non_blocking=False)
    )
    bench("raw: x.to(device), y.to(device)", lambda: (batch[0].to(device), batch[1].to(device)))
    batches = _Batches(loader)
    bench("engine: _Batches.next() over a DataLoader", batches.next)
    it = iter(loader)

    def raw_next() -> Any:
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    bench("raw: next(iterator) over the same DataLoader", raw_next)
    host = _HostLosses(device)
    bench("engine: loss.item() (CPU) / loss.detach() (CUDA)", lambda: host.add(loss))

    def chunk() -> None:
        for _ in range(k):
            host.add(loss)
        host.flush()
        host.ready()

    bench(f"engine: _HostLosses add x{k} + flush + ready, per step", chunk, per=k)
    mon = DivergenceMonitor(total_steps=6 * reps * k)
    vals = [2.3] * k
    bench(f"engine: DivergenceMonitor.update({k} losses), per step", lambda: mon.update(vals), per=k)
    bench(
        "engine: drain's running best over the finite losses, per step",
        lambda: min((v for v in vals if math.isfinite(v)), default=math.inf),
        per=k,
    )
    out = (
        f"\n### Per-step costs of the engine's extras (microbenchmarks, wall, best of 5; chunk {k})\n\n"
        "| us | what |\n|---:|---|\n"
    )
    return out + "".join(f"| {us:.2f} | {label} |\n" for label, us in rows)


# -- report


def fmt_us(s: float) -> str:
    return f"{s * 1e6:.1f}"


def p10(values: list[float]) -> float:
    """10th percentile: another process's load only ever adds time, so the low end is the tool's own cost."""
    return float(np.percentile(values, 10))


def median_extra(t: Timing, name: str) -> float:
    """Median over rounds of (contender - raw) seconds per step, paired by round."""
    return statistics.median(b - a for a, b in zip(t.per_step["raw"], t.per_step[name], strict=True))


def emit_projection(
    emit: Callable[[str], None], timings: dict[str, Timing], names: list[str], verdicts: list[str]
) -> None:
    """Projected ratios from the per-step cost measured on the tiny model.

    On a shared machine a 3% difference on a 40 ms step is inside the noise; a tool's own per-step cost does
    not depend on the model (on CPU), so it is measured on the tiny model, where it is most of the step, and
    added to each model's raw step. For the API row, one-off costs (the state snapshot) grow with the model.
    """
    tiny = timings["tiny"]
    contenders = [n for n in names if n != "raw"]
    emit("")
    emit("### Projected ratio = 1 + (extra us/step on tiny) / (raw us/step of the model), all at p10")
    emit("")
    emit("| model | raw us/step (p10) | " + " | ".join(LABELS[n] for n in contenders) + " |")
    emit("|---|---:|" + "---:|" * len(contenders))
    extra = {n: p10(tiny.per_step[n]) - p10(tiny.per_step["raw"]) for n in contenders}
    emit("| (extra on tiny, us/step) | | " + " | ".join(f"{extra[n] * 1e6:+.1f}" for n in contenders) + " |")
    for mname, t in timings.items():
        if mname == "tiny":
            continue
        raw = p10(t.per_step["raw"])
        proj = {n: 1 + extra[n] / raw for n in contenders}
        emit(f"| {mname} | {fmt_us(raw)} | " + " | ".join(f"{proj[n]:.3f}" for n in contenders) + " |")
        if "engine" in proj:
            msg = f"{mname} (projected): engine/raw {proj['engine']:.3f} <= 1.03: "
            msg += "MET" if proj["engine"] <= 1.03 else "MISSED"
            if "tlf" in proj:
                msg += (
                    f"; < tlf/raw ({proj['tlf']:.3f}): {'MET' if proj['engine'] < proj['tlf'] else 'MISSED'}"
                )
            verdicts.append(msg)


def timing_verdict(mname: str, t: Timing, names: list[str]) -> str:
    """The <= 1.03 target, judged on the geometric mean of the paired ratios, with its interval and the control's."""
    ratios = paired_ratios(t, "engine")
    eng, lo, hi = geo_ratio(ratios)
    med = statistics.median(ratios)
    msg = (
        f"{mname}: engine/raw {eng:.3f} [95% {lo:.3f}..{hi:.3f}] (median {med:.3f}) <= 1.03: "
        f"{'MET' if eng <= 1.03 else 'MISSED'}"
    )
    if CONTROL in names:
        msg += f"; A/A control {fmt_geo(paired_ratios(t, CONTROL))}"
    if "tlf" in names:
        tlf = geo_ratio(paired_ratios(t, "tlf"))[0]
        msg += f"; engine/raw < tlf/raw ({tlf:.3f}): {'MET' if eng < tlf else 'MISSED'}"
    return msg


def report(args: argparse.Namespace, device: torch.device) -> str:
    names = [n for n in CONTENDERS if n not in args.skip]
    # The control only means something next to the timed contenders; elsewhere it would repeat the raw loop.
    tools = [n for n in names if n != CONTROL]
    lines: list[str] = []
    emit = lines.append
    emit(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, steps {args.steps}, "
        f"rounds {args.rounds}, LR linear {args.min_lr:g}..{args.max_lr:g}, SGD momentum 0.9, CrossEntropy"
    )
    emit("")
    emit(
        "## Time per step (median over rounds; spread = min..max; ratio = median of per-round paired ratios; "
        "geo-mean = geometric mean of the paired ratios [95% interval]; extra = median of per-round paired "
        "differences)"
    )
    emit("")
    if CONTROL in names:
        emit(
            "The A/A control runs the raw loop again as a contender: its ratio is what noise alone reads, "
            "and a contender whose interval overlaps the control's is not measurably slower than the raw loop."
        )
        emit("")
    emit(
        "| model | contender | wall us/step | spread | ratio vs raw | ratio spread | geo-mean ratio [95%] "
        "| ratio of p10s | extra us/step | CPU us/step | CPU ratio |"
    )
    emit("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    verdicts: list[str] = []
    timings: dict[str, Timing] = {}
    for mname in args.models:
        case = CASES[mname]
        print(f"timing {mname} ...", file=sys.stderr, flush=True)
        t = timings[mname] = time_case(case, args, device, names)
        raw_w = t.per_step["raw"]
        for name in names:
            ps, cs = t.per_step[name], t.cpu_per_step[name]
            if name == "raw":
                ratio = rspread = geo = mins = extra = cratio = ""
            else:
                rr, cr = paired_ratios(t, name), paired_ratios(t, name, cpu=True)
                ratio, rspread = f"{statistics.median(rr):.3f}", f"{min(rr):.3f}..{max(rr):.3f}"
                geo = fmt_geo(rr)
                mins = f"{p10(ps) / p10(raw_w):.3f}"
                extra = f"{median_extra(t, name) * 1e6:+.1f}"
                cratio = f"{statistics.median(cr):.3f}"
            wall = f"{fmt_us(statistics.median(ps))} | {fmt_us(min(ps))}..{fmt_us(max(ps))}"
            emit(
                f"| {mname} | {LABELS[name]} | {wall} | {ratio} | {rspread} | {geo} | {mins} | {extra} "
                f"| {fmt_us(statistics.median(cs))} | {cratio} |"
            )
        if "engine" in names:
            verdicts.append(timing_verdict(mname, t, names))
    if "tiny" in timings and len(timings) > 1:
        emit_projection(emit, timings, names, verdicts)
    emit("")
    emit(
        "Models: "
        + "; ".join(CASES[m].describe for m in args.models)
        + ". Data: pre-made batches on the device, "
        "served by DataLoader(batch_size=None), cycled when shorter than the run. "
        "tlf = LRFinder() + range_test() "
        "(construction caches state in memory; tqdm/prints to /dev/null). api includes state save/restore, "
        "analysis and the result object."
    )

    if not args.skip_diverge:
        print("diverging runs ...", file=sys.stderr, flush=True)
        emit("")
        emit(
            f"## Diverging ladders (linear {args.diverge_min_lr:g}..{args.diverge_max_lr:g}, "
            f"{args.steps} steps)"
        )
        emit("")
        emit(
            "Reference curve: the raw loop reading every loss. Divergence points: `spike` = first loss "
            "non-finite or > 4x the minimum so far (one spike counts, even one the loss recovers from), "
            "`sustained` = first of 3 such losses in a row (the divergence the verdict judges against: a "
            "spike the training recovers from is not divergence, and issue 3 asks detection to ignore it), "
            "`non-finite` = first inf/NaN. `overshoot` = last step run - point (negative: stopped before "
            "it). torch-lr-finder runs with its defaults (diverge_th=5 on its EMA-smoothed loss)."
        )
        for scn in SCENARIOS:
            dv = diverge_case(scn, args, device, tools)
            pts = dv["points"]
            emit("")
            emit(f"### {scn.name}: {scn.describe}")
            emit("")
            emit(
                "Points: "
                + ", ".join(
                    f"{k} "
                    + ("never" if v is None else f"step {v} (lr {dv['lrs'][v]:.4g}, loss {dv['ref'][v]:.4g})")
                    for k, v in pts.items()
                )
            )
            emit("")
            emit(
                "| tool | steps run | overshoot vs spike | vs sustained | vs non-finite | same curve | stop |"
            )
            emit("|---|---:|---:|---:|---:|---|---|")
            for name, row in dv["rows"].items():
                last = row["steps"] - 1
                over = ["" if v is None else f"{last - v:+d}" for v in pts.values()]
                same = {None: "n/a", True: "yes", False: "no"}[row["same_curve"]]
                emit(f"| {LABELS[name]} | {row['steps']} | {' | '.join(over)} | {same} | {row['detail']} |")
            eng = dv["rows"].get("engine")
            sustained, spike = pts["sustained"], pts["spike"]
            if eng and sustained is not None:
                o = eng["steps"] - 1 - sustained
                verdicts.append(
                    f"diverging run '{scn.name}': engine stops {o:+d} steps from the sustained divergence "
                    f"(<= 5): {'MET' if o <= 5 else 'MISSED'} ({eng['steps'] - 1 - spike:+d} from the first "
                    "single spike)"
                )
            elif eng and spike is not None:
                o = eng["steps"] - 1 - spike
                verdicts.append(
                    f"diverging run '{scn.name}': no sustained divergence; engine stops {o:+d} steps from "
                    f"the only spike (<= 5): {'MET' if o <= 5 else 'MISSED'}"
                )

    if not args.skip_memory:
        print("memory (fresh subprocess per contender) ...", file=sys.stderr, flush=True)
        emit("")
        emit("## Peak memory, each contender in a fresh subprocess")
        emit("")
        emit(
            "All tools imported before the baseline; `peak` is VmHWM after resetting it "
            "(via /proc/self/clear_refs) "
            "just before the run, `delta` = peak - RSS just before the run (the run's own cost)."
            + (
                " CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats."
                if device.type == "cuda"
                else ""
            )
        )
        emit("")
        cuda = device.type == "cuda"
        emit(
            "| model | contender | RSS before MiB | peak RSS MiB | delta MiB |"
            + (" CUDA peak MiB | CUDA delta MiB |" if cuda else "")
        )
        emit("|---|---|---:|---:|---:|" + ("---:|---:|" if cuda else ""))
        for mname in args.models:
            for name in tools:
                m = measure_memory(mname, name, args)
                if "error" in m:
                    emit(f"| {mname} | {LABELS[name]} | error: {m['error']} | | |" + (" | |" if cuda else ""))
                    continue
                row = (
                    f"| {mname} | {LABELS[name]} | {m['rss_before_mib']:.1f} | {m['peak_mib']:.1f} "
                    f"| {m['delta_mib']:.1f} |"
                )
                if cuda:
                    row += f" {m['cuda_peak_mib']:.1f} | {m['cuda_delta_mib']:.1f} |"
                emit(row)

    emit("")
    emit("## Host syncs per step")
    emit("")
    if device.type == "cuda" or args.force_sync_count:
        emit(
            "| model | contender | sync-debug warnings/step | blocking CUDA sync calls/step "
            "| DtoH copies/step |"
        )
        emit("|---|---|---:|---:|---:|")
        for mname in args.models:
            for name in tools:
                s = count_syncs(CASES[mname], name, args, device)
                dbg = f"{s['debug_mode_per_step']:.3f}" if "debug_mode_per_step" in s else "n/a"
                emit(
                    f"| {mname} | {LABELS[name]} | {dbg} | {s['blocking_calls_per_step']:.3f} | "
                    f"{s['dtoh_copies_per_step']:.3f} |"
                )
        if device.type != "cuda":
            emit("")
            emit("(CPU: no CUDA activity exists, so these are 0 by construction; the path ran to prove it)")
    else:
        emit(
            "Skipped: needs --device cuda (sync debug mode + profiler counts of cudaStreamSynchronize/"
            "cudaEventSynchronize/DtoH memcpy). Add --force-sync-count to exercise the code path on CPU."
        )

    if not args.skip_help:
        print("startup ...", file=sys.stderr, flush=True)
        cmd = cli_command()
        h, hw = median_wall(cmd)
        imp, iw = median_wall([sys.executable, "-c", "import torch"])
        emit("")
        emit("## Startup (subprocess wall, median of 5 after one warm-up)")
        emit("")
        emit("| command | median s | all runs s |")
        emit("|---|---:|---|")
        emit(f"| `{shlex.join(cmd)}` | {h:.3f} | {', '.join(f'{x:.3f}' for x in hw)} |")
        emit(f"| `python -c 'import torch'` | {imp:.3f} | {', '.join(f'{x:.3f}' for x in iw)} |")
        emit("")
        emit(f"Ratio --help / import torch: {h / imp:.1%} (target < 25%)")
        verdicts.append(
            f"--help is {h / imp:.1%} of import torch (< 25%): {'MET' if h / imp < 0.25 else 'MISSED'}"
        )

    if args.instr_models:
        emit(instructions_section(args, verdicts))

    if args.profile:
        print("profiling ...", file=sys.stderr, flush=True)
        emit(ablate_engine(args, device))
        emit(profile_engine(args, device))
        emit(micro_costs(device))

    emit("")
    emit("## Targets")
    emit("")
    lines.extend(f"- {v}" for v in verdicts)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=None, help="steps per run (default 300 on CPU, 1000 on CUDA)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--models", default="tiny,mlp,cnn,transformer")
    p.add_argument(
        "--tiny-rounds", type=int, default=40, help="rounds for the tiny model (cheap, noise-prone)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every contender")
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--max-lr", type=float, default=1e-3)
    p.add_argument("--diverge-min-lr", type=float, default=1e-3)
    p.add_argument("--diverge-max-lr", type=float, default=50.0)
    p.add_argument("--skip", default="", help="contenders to leave out, e.g. api,tlf,control")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-diverge", action="store_true")
    p.add_argument("--skip-help", action="store_true")
    p.add_argument(
        "--force-sync-count", action="store_true", help="run the host-sync counting path on CPU too"
    )
    p.add_argument(
        "--profile", action="store_true", help="cProfile + microbenchmarks of the engine on the MLP"
    )
    p.add_argument(
        "--markdown", type=Path, default=None, help="also write the report (command line on top) here"
    )
    p.add_argument(
        "--instr-models",
        default="",
        help="count instructions per step under valgrind for these models (e.g. tiny,mlp; ~7 min)",
    )
    p.add_argument(
        "--instr-steps",
        default=",".join(map(str, INSTR_STEPS)),
        help="the short and the long ladder of the instruction count (4,12 for the CNN and Transformer: ~25 min)",
    )
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_instr-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child is not None:
        print(json.dumps(child_memory(json.loads(args._child))))
        return 0
    if args._instr_child is not None:
        child_instructions(json.loads(args._instr_child))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    args.steps = args.steps or (1000 if args.device == "cuda" else 300)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.instr_models = [m.strip() for m in args.instr_models.split(",") if m.strip()]
    try:
        short, long_ = (int(n) for n in args.instr_steps.split(","))
    except ValueError:
        p.error(f"--instr-steps {args.instr_steps!r}: give two step counts, e.g. 100,500")
    if not 0 < short < long_:
        p.error(
            f"--instr-steps {args.instr_steps!r}: the short ladder must be shorter than the long one and > 0"
        )
    args.instr_steps = (short, long_)
    unknown = [m for m in args.models + args.instr_models if m not in CASES]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(CASES)}")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()} - {"raw"}
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    text = report(args, device)
    cmdline = shlex.join(["python", "bench/overhead.py", *(sys.argv[1:] if argv is None else argv)])
    print(text)
    if args.markdown:
        args.markdown.write_text(f"# clrfind overhead benchmark\n\n`{cmdline}`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
