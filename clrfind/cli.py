"""The `clrfind` command line: a thin Typer shell over the library API.

Each command parses its options, calls one library function and renders the outcome. Every `ClrfindError` is shown
as a one-line `error: ...` on stderr with its exit code (2 for bad specs or usage, 1 for run failures, 130 for
Ctrl-C, 143 for SIGTERM); `--debug` shows the traceback instead. Nothing heavy is imported at module level:
`clrfind --help` must stay a fraction of a torch import.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import typer.core
from rich.console import Console

from clrfind import __version__
from clrfind.errors import ClrfindError, UsageError, exception_text, one_line, without_escapes
from clrfind.stops import signal_of, stop_signals, stop_verb

if TYPE_CHECKING:
    from clrfind.api import CheckReport, RunFiles
    from clrfind.results import RangeTestResult


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Click's error base: typer's own since it vendors Click (0.2x), `click.ClickException` before."""
    types: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        types.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


class _OneLineUsageErrors(typer.core.TyperGroup):
    """Usage errors Click finds (an unknown flag, `--min-lr 1e-5x`, `--repeats 0`) in clrfind's one-line format,
    `error: ...` on stderr with exit 2, like every other error, instead of Rich's boxed panel.

    Click renders them inside `main` when it runs standalone; run non-standalone, they reach this method, which
    renders them and exits as standalone mode would. CliRunner calls `main` too, so tests see what users see.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _usage_error_types() as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `clrfind` alone: the help, as before
                exc.show()  # type: ignore[attr-defined]
            else:
                ctx = getattr(exc, "ctx", None)
                hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
                _err().print(f"error: {_click_message(exc)}{hint}", markup=False)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:  # end of input inside a prompt
            _err().print("error: aborted", markup=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _click_message(exc: Exception) -> str:
    """Click's message on one line, with the name a mistyped choice most likely meant (`--policy one_cycle`: did
    you mean 'one-cycle'?). Typer's pydantic coercion prefixes a choice's message with "Value error, ", which says
    nothing to a user."""
    import re

    message = one_line(exc.format_message()).replace(": Value error, ", ": ")  # type: ignore[attr-defined]
    choice = re.search(r"'([^']*)' is not one of ((?:'[^']*'(?:, )?)+)", message)
    if choice is not None:
        from clrfind.spec import likely_name

        meant = likely_name(choice[1], re.findall(r"'([^']*)'", choice[2]), {})
        if meant is not None:
            message = f"{message.rstrip('.')} (did you mean {meant!r}?)"
    return message


app = typer.Typer(
    name="clrfind",
    help="Find learning-rate bounds for PyTorch with Leslie Smith's LR range test.",
    cls=_OneLineUsageErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class _State:
    debug: bool = False


_state = _State()


class _Stdout(Console):
    """stdout, whose reader may leave early (`clrfind ... | head`): that ends the command quietly (`_cli_errors`)
    instead of in rich's SystemExit, which would read as the spec's code calling sys.exit."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def _out() -> Console:
    return _Stdout(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _cli_errors(fn: F) -> F:
    """Render ClrfindError as one line on stderr with its exit code; anything else is a clrfind bug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClrfindError as exc:
            if _state.debug:
                # The traceback's message names the first problem and a count: list them all above it.
                for problem in exc.problems if len(exc.problems) > 1 else []:
                    _err().print(f"error: {problem}", markup=False)
                raise
            if not exc.reported:  # reported already by another rank of the same torchrun job
                _err().print(f"error: {without_escapes(str(exc))}", markup=False)
            raise typer.Exit(code=exc.exit_code) from None
        except BrokenPipeError:  # stdout's reader left (`| head`); what the command saves is saved already
            # Python flushes stdout again at exit: onto /dev/null, not into the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt as exc:  # outside a run (the library says what a run saved)
            if _state.debug:
                raise
            signum = signal_of(exc)
            _err().print(f"error: {stop_verb(signum)}", markup=False)
            raise typer.Exit(code=128 + signum) from None
        except SystemExit as exc:  # clrfind exits through typer.Exit: this came from code the spec runs
            if _state.debug:
                raise
            _err().print(
                f"error: code the spec runs called {exception_text(exc)} outside a step clrfind could name "
                "(run with --debug for the traceback)",
                markup=False,
            )
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clrfind {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Find learning-rate bounds for PyTorch with Leslie Smith's LR range test.

    A spec runs the code it names (your model, data and step functions), like any training script.
    """
    _state.debug = debug


class ModeOpt(str, Enum):
    auto = "auto"
    linear = "linear"
    exp = "exp"


class MetricOpt(str, Enum):
    loss = "loss"
    accuracy = "accuracy"
    val_loss = "val_loss"


class VerifyOnOpt(str, Enum):
    auto = "auto"
    val = "val"


class PolicyOpt(str, Enum):
    auto = "auto"
    triangular = "triangular"
    triangular2 = "triangular2"
    exp_range = "exp_range"
    one_cycle = "one-cycle"
    cosine = "cosine"


class FormatOpt(str, Enum):
    yaml = "yaml"
    json = "json"
    python = "python"


_RUN = "Run"
_RANGE = "LR range"


def _print_summary(result: RangeTestResult, files: RunFiles, console: Console) -> None:
    """A short, plain-text summary a person reads after the bar: the result's own summary, then where the files
    are."""
    console.print(result.summary(), markup=False)
    console.print(f"results: {files.results}", markup=False)
    if files.plot:
        console.print(f"plot: {files.plot}", markup=False)
    if files.schedule:
        console.print(f"schedule: {files.schedule}", markup=False)
    elif files.schedule_error:
        console.print(f"schedule: not written ({files.schedule_error})", markup=False)


@contextmanager
def _progress(title: str, total: int | None, *, enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """The progress bar's callback on stderr, or None when quiet or not on a terminal (nothing is rendered)."""
    from clrfind.progress import progress_callback

    with progress_callback(title, total, console=_err(), enabled=enabled) as callback:
        yield callback


def _overrides(**values: Any) -> dict[str, Any]:
    """CLI options that were given, as dotted spec keys (one override mechanism for the CLI and sweeps)."""
    keys = {
        "device": "device",
        "steps": "range_test.steps",
        "epochs": "range_test.epochs",
        "min_lr": "range_test.min_lr",
        "max_lr": "range_test.max_lr",
        "mode": "range_test.mode",
        "seed": "seed",
        "metric": "range_test.metric",
        "verify_bounds": "verify_bounds",
        "verify_on": "verify_on",
        "train_epochs": "training.epochs",
    }
    if values.get("steps") is not None and values.get("epochs") is not None:
        raise UsageError("--steps and --epochs give the test's length two ways", hint="pass one of them")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        out[keys[name]] = value.value if isinstance(value, Enum) else value
    return out


# range-test's options with a paragraph of help, kept out of its signature.
_TrainEpochsOpt = Annotated[
    int | None,
    typer.Option(
        help="Epochs of the training the bounds are for: the test then lasts about as long (300-1000 steps) "
        "unless --steps/--epochs say otherwise, and the schedule spans them (the spec's training.epochs).",
        rich_help_panel=_RANGE,
    ),
]

_VerifyBoundsOpt = Annotated[
    bool | None,
    typer.Option(
        "--verify-bounds/--no-verify-bounds",
        help="Train with the suggested one cycle, compressed, before trusting its peak (default: the spec's "
        "verify_bounds, on).",
        rich_help_panel=_RANGE,
    ),
]

_VerifyOnOpt = Annotated[
    VerifyOnOpt | None,
    typer.Option(
        help="Judge the self-check's trials on held-out training samples (auto) or on data.val (val: where held-out "
        "samples would flatter memorization, such as windows of one text, augmented copies, or validation data from "
        "elsewhere). Default: the spec's verify_on, auto.",
        rich_help_panel=_RANGE,
    ),
]

_LogOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--log",
        metavar="TRACKER",
        help="Also log the curve, bounds, plot and schedule to tensorboard[:DIR] (default DIR: "
        "<out>/tensorboard/<time>), wandb[:PROJECT] or mlflow[:EXPERIMENT]; repeat for several.",
        rich_help_panel=_RUN,
        show_default=False,
    ),
]


@app.command("range-test")
@_cli_errors
def range_test_cmd(
    spec: Annotated[Path, typer.Argument(help="The YAML spec naming your model, data, loss and optimizer.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output folder (default: clrfind-runs/<spec name>).", rich_help_panel=_RUN
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto, cpu, cuda, cuda:N or mps (overrides the spec).", rich_help_panel=_RUN),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Optimizer steps in the test (default: the spec's, else 300 or about --train-epochs' length).",
            rich_help_panel=_RANGE,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Run for N passes over the data instead of --steps.", rich_help_panel=_RANGE),
    ] = None,
    train_epochs: _TrainEpochsOpt = None,
    min_lr: Annotated[
        float | None, typer.Option(help="Lowest LR of the ladder.", rich_help_panel=_RANGE)
    ] = None,
    max_lr: Annotated[
        float | None, typer.Option(help="Highest LR of the ladder.", rich_help_panel=_RANGE)
    ] = None,
    mode: Annotated[
        ModeOpt | None,
        typer.Option(
            help="LR ladder: auto (exp over more than 1.5 decades, else linear), linear (the paper's) or exp.",
            rich_help_panel=_RANGE,
        ),
    ] = None,
    metric: Annotated[
        MetricOpt | None,
        typer.Option(
            help="Read the bounds from loss, or accuracy/val_loss on data.val.", rich_help_panel=_RANGE
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (overrides the spec).", rich_help_panel=_RUN)
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=_RUN)
    ] = False,
    repeats: Annotated[
        int,
        typer.Option(
            help="Run K times with seeds seed..seed+K-1; bounds from the mean curve, with spread.",
            rich_help_panel=_RUN,
            min=1,
        ),
    ] = 1,
    verify_bounds: _VerifyBoundsOpt = None,
    verify_on: _VerifyOnOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check the spec and one batch (like `clrfind check`), write nothing.",
            rich_help_panel=_RUN,
        ),
    ] = False,
    log: _LogOpt = None,
) -> None:
    """Run the LR range test a spec describes; write results, plot and schedule."""
    import time

    from clrfind.api import default_out_dir
    from clrfind.loggers import experiment_loggers, log_result
    from clrfind.runs import Outcome, run
    from clrfind.spec import load_spec

    overrides = _overrides(
        device=device,
        steps=steps,
        epochs=epochs,
        min_lr=min_lr,
        max_lr=max_lr,
        mode=mode,
        seed=seed,
        metric=metric,
        verify_bounds=verify_bounds,
        verify_on=verify_on,
        train_epochs=train_epochs,
    )
    loaded = load_spec(spec, overrides)
    out = out or default_out_dir(loaded)
    # Checked before the run: a tracker whose package is missing must not cost a run's time first.
    stamp = time.strftime("%Y%m%d-%H%M%S")  # one folder per run, as SummaryWriter's own runs/<date>_<host>
    loggers = experiment_loggers(log, option="--log", default_dir=out / "tensorboard" / stamp)
    progress = functools.partial(_progress, enabled=not quiet)
    with stop_signals():
        outcome = run(loaded, out_dir=out, repeats=repeats, dry_run=dry_run, progress=progress)
    if not isinstance(outcome, Outcome):
        _print_check(outcome)
    elif outcome.reports:
        console = _out()
        _print_summary(outcome.result, outcome.files, console)
        for place in log_result(outcome.result, loggers):
            console.print(f"logged: {place}", markup=False)


def _print_check(report: CheckReport) -> None:
    console = _out()
    for label, value in report.rows():
        console.print(f"{label}: {value}", markup=False)
    console.print("ok: the spec builds and one batch trains; nothing was written")


@app.command("check")
@_cli_errors
def check_cmd(
    spec: Annotated[Path, typer.Argument(help="The YAML spec to check.")],
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps (overrides the spec).")
    ] = None,
) -> None:
    """Validate a spec, build everything, train one batch and estimate the run time, without writing results."""
    from clrfind.api import check_spec
    from clrfind.spec import load_spec

    _print_check(check_spec(load_spec(spec, _overrides(device=device))))


@app.command("plot")
@_cli_errors
def plot_cmd(
    results: Annotated[Path, typer.Argument(help="A range_test.json (or the run folder holding it).")],
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="PNG (or folder) to write (default: beside the results)."),
    ] = None,
    log_x: Annotated[
        bool | None, typer.Option("--log-x/--linear-x", help="LR axis scale (default: log for exp tests).")
    ] = None,
) -> None:
    """Re-render the plot from a results file alone (no torch needed)."""
    from clrfind.fileio import output_file
    from clrfind.multi import SWEEP_NAME, is_sweep_file, load_sweep
    from clrfind.plotting import plot_result, plot_sweep, save_figure
    from clrfind.results import PLOT_NAME, load_results

    folder = results if results.is_dir() else results.parent
    if is_sweep_file(results):
        _, runs = load_sweep(results / SWEEP_NAME if results.is_dir() else results)
        fig = plot_sweep(runs, log_x=log_x)
        default = folder / "sweep.png"
    else:
        fig = plot_result(load_results(results), log_x=log_x)
        default = folder / PLOT_NAME
    target = output_file(out, default)
    _check_suffix(target, ".png", "--out")
    path = save_figure(fig, target)
    _out().print(f"plot: {path}", markup=False)


def _check_suffix(path: Path, suffix: str, option: str) -> None:
    if path.suffix.lower() != suffix:
        raise UsageError(
            f"{option} {path}: expected a {suffix} file", hint=f"e.g. {option} {path.with_suffix(suffix)}"
        )


@app.command("export")
@_cli_errors
def export_cmd(
    results: Annotated[Path, typer.Argument(help="A range_test.json (or the run folder holding it).")],
    out: Annotated[
        str | None,
        typer.Option(
            "--out", "-o", help="File (or folder) to write, '-' for stdout (default: beside the results)."
        ),
    ] = None,
    policy: Annotated[
        PolicyOpt,
        typer.Option(
            help="Schedule policy; auto = one-cycle with a training length (--epochs or the test's training.epochs), "
            "triangular without."
        ),
    ] = PolicyOpt.auto,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Training length; the schedule is fitted to end at the end of a cycle (default: the range "
            "test's training.epochs)."
        ),
    ] = None,
    steps_per_epoch: Annotated[
        int | None,
        typer.Option(
            help="Optimizer steps per epoch (default: the range test's training, else what it saw)."
        ),
    ] = None,
    fmt: Annotated[FormatOpt, typer.Option("--format", help="Output format.")] = FormatOpt.yaml,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify", help="Construct the torch scheduler to prove the kwargs (imports torch)."
        ),
    ] = False,
    trust_results: Annotated[
        bool,
        typer.Option(
            "--trust-results",
            help="Let --verify build an optimizer from outside torch.optim (it runs the code the file names).",
        ),
    ] = False,
) -> None:
    """Write a schedule config (CyclicLR, OneCycleLR, ...) from a results file, usable as is."""
    from clrfind.export import build_schedule, render_schedule, verify_schedule
    from clrfind.fileio import output_file, write_atomic
    from clrfind.results import RESULTS_NAME, load_results

    if epochs is not None and epochs <= 0:
        raise UsageError(
            f"--epochs must be a positive number of epochs, got {epochs}", hint="e.g. --epochs 20"
        )
    if steps_per_epoch is not None and steps_per_epoch <= 0:
        raise UsageError(f"--steps-per-epoch must be positive, got {steps_per_epoch}")
    result = load_results(results)
    source = results / RESULTS_NAME if results.is_dir() else results
    schedule = build_schedule(
        result, policy=policy.value, epochs=epochs, steps_per_epoch=steps_per_epoch, results_path=str(source)
    )
    if verify:
        verify_schedule(schedule, trust=trust_results)
    for warning in schedule.get("warnings", []):
        _err().print(f"warning: {warning}", markup=False)
    text = render_schedule(schedule, fmt.value)
    if out == "-":
        sys.stdout.write(text)
        return
    folder = results if results.is_dir() else results.parent
    suffix = {"yaml": ".yaml", "json": ".json", "python": ".py"}[fmt.value]
    path = write_atomic(output_file(out, folder / f"schedule{suffix}"), text)
    _out().print(f"schedule: {path}", markup=False)


@app.command("sweep")
@_cli_errors
def sweep_cmd(
    spec: Annotated[Path, typer.Argument(help="The YAML spec to sweep.")],
    set_: Annotated[
        list[str],
        typer.Option(
            "--set", help="KEY=V1,V2,... with a dotted spec key; give one or two.", show_default=False
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: clrfind-runs/<spec>-sweep).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps (overrides the spec).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps per test.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """One range test per value of a spec key (e.g. weight decay); overlay the curves and pick a value.

    Smith (2018): the value that allows the largest max_lr at the lowest loss regularises best.
    """
    from clrfind.results import format_lr
    from clrfind.runs import available_devices, sweep
    from clrfind.spec import load_spec, parse_override

    settings = [parse_override(text) for text in set_]
    loaded = load_spec(spec, _overrides(device=device, steps=steps))
    out_dir = out or Path("clrfind-runs") / f"{loaded.name}-sweep"
    devices = available_devices() if device is None else [device]
    progress = functools.partial(_progress, enabled=not quiet)
    with stop_signals():
        outcome = sweep(loaded, settings, out_dir=out_dir, devices=devices, progress=progress)
    console = _out()
    width = max([28, *(len(run.label) + 1 for run in outcome.sweep.runs)])  # two keys make longer labels
    console.print(f"{'value':<{width}} {'base_lr':>9} {'max_lr':>9} {'lowest loss':>12}  confidence  stopped")
    for run in outcome.sweep.runs:
        low = "-" if run.lowest_loss is None else f"{run.lowest_loss:.4g}"
        mark = " <- recommended" if run.label == outcome.sweep.recommended else ""
        status = run.stop_reason if run.error is None else f"error: {run.error}"
        console.print(
            f"{run.label:<{width}} {format_lr(run.base_lr):>9} {format_lr(run.max_lr):>9} {low:>12}  "
            f"{run.confidence:<10}  {status}{mark}",
            markup=False,
        )
    console.print(f"recommended: {outcome.sweep.rationale}", markup=False)
    for line in outcome.sweep.per_key:
        console.print(f"  {line}", markup=False)
    console.print(f"sweep: {outcome.path}", markup=False)
    if outcome.plot:
        console.print(f"plot: {outcome.plot}", markup=False)
    if all(r.error for r in outcome.sweep.runs):
        raise ClrfindError("every run of the sweep failed; see the table above")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
