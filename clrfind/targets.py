"""Resolve `target:` strings to Python objects and check their kwargs against signatures before anything is built.

Forms: ``"pkg.mod:attr"`` (attr may be dotted, ``"pkg.mod:Outer.inner"``), ``"pkg.mod.attr"`` (the longest importable
module prefix wins), and ``"file.py:attr"`` / ``"sub/dir/file.py:attr"`` relative to the spec's folder. Like
torchtune's config, a target is a partial constructor: the spec gives the kwargs, clrfind supplies the runtime inputs
(an optimizer's params, a step's model/batch/loss_fn), and binding both against the signature catches typos in seconds
instead of after the data has loaded.

A spec runs the code it names, like any training script; that is documented, not sandboxed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import pkgutil
import re
import sys
import sysconfig
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clrfind.errors import (
    USER_FAILURES,
    ClrfindError,
    SetupError,
    TargetError,
    describe_exception,
    short_repr,
)
from clrfind.spec import TARGET_ALIASES, closest

if TYPE_CHECKING:
    from clrfind.spec import LoadedSpec

# Parent package of every module imported from a file target: a real package (clrfind_user/) whose finder
# re-imports a file from its module name, so `pickle` finds classes defined in those files in other processes too.
USER_PACKAGE = "clrfind_user"

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_FORMS = "write 'pkg.mod:attr', 'pkg.mod.attr' or 'file.py:attr'"
_STEP_ARGS = ("model", "batch", "loss_fn")
_LOSS_ARGS = ("output", "target")
_HERE = Path(__file__).resolve().parent


class _ModuleMissing(Exception):
    """The module itself does not exist (as opposed to existing and failing to import)."""

    def __init__(self, name: str, missing: str) -> None:
        super().__init__(name)
        self.name = name
        self.missing = missing


# -- resolving -----------------------------------------------------------------------------------------------------


def resolve_target(target: str, *, base_dir: Path, key: str, source: str) -> Any:
    """The object a target string names.

    Args:
        target: ``"pkg.mod:attr"``, ``"pkg.mod.attr"`` or ``"file.py:attr"`` (relative to `base_dir`, or absolute).
        base_dir: the spec's folder.
        key: the spec key path of the target (``"model.target"``), for messages.
        source: the spec file name, for messages.

    Raises:
        TargetError: bad form, module missing or failing to import, file missing, attribute missing (one line,
            with a suggestion where one exists).
    """
    where = f"{source}: {key}"
    text = target.strip()
    if not text:
        raise TargetError(f"{where}: empty target: {_FORMS}")
    if ":" in text:
        module_part, _, attr = text.rpartition(":")
        if not module_part or not attr:
            raise TargetError(f"{where}: '{text}' needs a module and an attribute around ':': {_FORMS}")
        if not _DOTTED.fullmatch(attr):
            raise TargetError(
                f"{where}: '{attr}' in '{text}' is not an attribute name: write names separated by dots, "
                "e.g. 'models.py:Net' or 'pkg.mod:Outer.inner'"
            )
        if _is_file_part(module_part):
            module = _load_file(module_part, base_dir=base_dir, where=where, target=text)
            return _walk(module, attr, label=Path(module_part).name, where=where, target=text)
        if not _DOTTED.fullmatch(module_part):
            raise TargetError(f"{where}: '{module_part}' in '{text}' is not a module name: {_FORMS}")
        try:
            module = _import_module(module_part, where=where)
        except _ModuleMissing as exc:
            raise TargetError(f"{where}: {_missing_message(exc, text, base_dir)}") from None
        return _walk(module, attr, label=module_part, where=where, target=text)
    if _is_file_part(text):
        raise TargetError(f"{where}: '{text}' names a file but no attribute: write '{text}:MyNet'")
    if not _DOTTED.fullmatch(text):
        raise TargetError(f"{where}: '{text}' is not a target: {_FORMS}")
    if "." not in text:
        raise TargetError(f"{where}: '{text}' has no module: {_bare_name_fix(text, key)}")
    parts = text.split(".")
    # Longest importable prefix: "torch.nn.CrossEntropyLoss" imports torch.nn, "pkg.mod.Outer.inner" pkg.mod.
    for cut in range(len(parts) - 1, 0, -1):
        try:
            module = _import_module(".".join(parts[:cut]), where=where)
        except _ModuleMissing:
            continue
        return _walk(module, ".".join(parts[cut:]), label=".".join(parts[:cut]), where=where, target=text)
    # Only the top-level package can be the missing one here: had it imported, the loop would have returned.
    raise TargetError(f"{where}: {_missing_message(_ModuleMissing(parts[0], parts[0]), text, base_dir)}")


def _bare_name_fix(name: str, key: str) -> str:
    """The fix for a target without a module: torch's own class of that name where torch has one (a loss in
    torch.nn, an optimizer in torch.optim), else the two forms."""
    import torch

    homes = {"loss": [torch.nn], "optimizer": [torch.optim]}.get(key.split(".")[0], [torch.nn, torch.optim])
    home = next((m for m in homes if callable(getattr(m, name, None))), None)
    if home is not None:
        return f"write '{home.__name__}.{name}' for torch's"
    return f"write 'models.py:{name}' or 'pkg.mod:{name}'"


def _is_file_part(text: str) -> bool:
    return text.endswith(".py") or "/" in text or "\\" in text


# torch's modules under the short names code imports them as (`from torch import nn, optim`,
# `import torch.nn.functional as F`): a target written with one is most likely meant as torch's.
_TORCH_ALIASES = {"nn": "torch.nn", "optim": "torch.optim", "F": "torch.nn.functional"}


def _missing_message(exc: _ModuleMissing, target: str, base_dir: Path) -> str:
    top = exc.missing.split(".")[0]
    rest = target[len(top) :].lstrip(".:")
    fix = "check the spelling, install the package, or write 'file.py:attr' for a file beside the spec"
    guess = ""
    if exc.missing == top and (base_dir / f"{top}.py").is_file() and rest:
        # `models.Net` for the models.py beside the spec: dotted targets are importable modules, not files.
        fix = f"write '{top}.py:{rest}' for the file {top}.py beside the spec"
    elif exc.missing == top and top in _TORCH_ALIASES and rest:
        fix = f"write '{_TORCH_ALIASES[top]}.{rest.replace(':', '.')}' for torch's, or the module's full name"
    elif exc.missing == top:
        close = closest(top, _top_level_modules())
        guess = f" (did you mean '{close}'?)" if close else ""
    return f"could not import '{exc.name}' for '{target}' (No module named '{exc.missing}'){guess}: {fix}"


def _top_level_modules() -> list[str]:
    """Importable top-level names, for "did you mean" on a misspelt package (only computed on that error path)."""
    names = {m.name for m in pkgutil.iter_modules()}
    names.update(getattr(sys, "stdlib_module_names", ()))
    names.update(n for n in sys.modules if "." not in n)
    return sorted(n for n in names if not n.startswith("_"))


def _import_module(name: str, *, where: str) -> types.ModuleType:
    """Import `name`; `_ModuleMissing` when it does not exist, TargetError when it exists but fails to import."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # exc.name is the module Python could not find: `name` itself or a parent means "missing"; anything else
        # is a dependency the module imports, which is an error inside that module.
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise _ModuleMissing(name, exc.name) from None
        raise TargetError(
            f"{where}: importing '{name}' raised {describe_exception(exc)}{_exc_where(exc)}: "
            "install what it imports"
        ) from exc
    except USER_FAILURES as exc:
        raise TargetError(
            f"{where}: importing '{name}' raised {describe_exception(exc)}{_exc_where(exc)}: "
            "fix the error in that module"
        ) from exc


def _load_file(file_part: str, *, base_dir: Path, where: str, target: str) -> types.ModuleType:
    """Import a .py file as ``clrfind_user.<stem>_<path in hex>``, once per process while the file is unchanged.

    Two targets in one file share one module (and so one class object). An edited file is imported again (its
    mtime and size are stamped on the module), so a notebook picks up changes without restarting.
    """
    given = Path(file_part).expanduser()
    path = (given if given.is_absolute() else base_dir / given).resolve()
    if path.suffix != ".py":
        raise TargetError(f"{where}: '{file_part}' in '{target}' is not a .py file: {_FORMS}")
    if not path.exists():
        raise TargetError(
            f"{where}: file '{file_part}' not found (looked for {path}); file targets are relative to the spec's "
            "folder"
        )
    if not path.is_file():
        raise TargetError(f"{where}: '{path}' is not a file: point the target at a .py file")
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    short = user_module_name(path)
    name = f"{USER_PACKAGE}.{short}"
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__clrfind_stamp__", None) == stamp:
        return cached
    parent = importlib.import_module(USER_PACKAGE)
    spec = _file_spec(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(
            f"{where}: cannot import '{path}' as a Python module: point the target at a .py file"
        )
    module = importlib.util.module_from_spec(spec)
    module.__clrfind_stamp__ = stamp  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except USER_FAILURES as exc:
        sys.modules.pop(name, None)
        fix = (
            "install what it imports"
            if isinstance(exc, ModuleNotFoundError)
            else "fix the error in that file"
        )
        raise TargetError(
            f"{where}: importing '{file_part}' raised {describe_exception(exc)}{_exc_where(exc)}: " + fix
        ) from exc
    except BaseException:
        sys.modules.pop(name, None)
        raise
    setattr(parent, short, module)
    return module


def user_module_name(path: Path) -> str:
    """`<stem>_<path in hex>`: readable, and decodable back to the file (see UserFileFinder)."""
    stem = re.sub(r"\W", "_", path.stem)
    return f"{stem}_{str(path).encode().hex()}"


def _file_spec(name: str, path: Path) -> importlib.machinery.ModuleSpec | None:
    """The import spec of a file target: its source, run by `_SiblingLoader`."""
    return importlib.util.spec_from_file_location(name, path, loader=_SiblingLoader(name, str(path)))


class UserFileFinder(importlib.abc.MetaPathFinder):
    """Finds ``clrfind_user.<stem>_<path in hex>`` in a process that never resolved the spec (a DataLoader worker,
    an unpickler): the name says which file to run."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, short = fullname.partition(".")
        if package != USER_PACKAGE or not short or "." in short:
            return None
        try:
            file = Path(bytes.fromhex(short.rpartition("_")[2]).decode())
        except ValueError:
            return None
        return _file_spec(fullname, file) if file.is_file() else None


class _SiblingLoader(importlib.machinery.SourceFileLoader):
    """Runs a file target with its folder first on sys.path, as `python models.py` would have it.

    So `import helpers` finds the file beside it. Afterwards the folder stays at the end of sys.path: imports made
    later inside the user's functions still work, but nothing in the spec's folder can shadow an installed package
    for the rest of the process.
    """

    def exec_module(self, module: types.ModuleType) -> None:
        path = Path(self.path)
        folder = str(path.parent)
        sys.path.insert(0, folder)
        importlib.invalidate_caches()
        hidden = _hide_shadowed(path.parent)
        try:
            super().exec_module(module)
        finally:
            sys.path.remove(folder)  # removes the first occurrence: the one inserted above
            if folder not in sys.path:
                sys.path.append(folder)
            sys.modules.update(hidden)


def _hide_shadowed(folder: Path) -> dict[str, types.ModuleType]:
    """Take out of sys.modules, for the import of a file in `folder`, modules its siblings must replace.

    `import helpers` in a spec's models.py must get the helpers.py beside it, also when another spec's folder
    (or an installed package) already put a different `helpers` in sys.modules, which Python would return
    as is. Those are removed while the file runs and put back after (the rest of the process keeps them).
    """
    try:
        entries = list(folder.iterdir())
    except OSError:
        return {}
    names = {e.stem for e in entries if e.suffix == ".py"} | {
        e.name for e in entries if (e / "__init__.py").is_file()
    }
    hidden: dict[str, types.ModuleType] = {}
    for name in names & sys.modules.keys():
        file = getattr(sys.modules[name], "__file__", None)
        if file is None or Path(file).resolve().parent in (folder, folder / name):
            continue  # built in, or already this folder's own
        for key in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
            hidden[key] = sys.modules.pop(key)
    return hidden


def _walk(obj: Any, attr: str, *, label: str, where: str, target: str) -> Any:
    """Follow a dotted attribute path, importing submodules that a package does not import itself."""
    parts = attr.split(".")
    for i, part in enumerate(parts):
        owner = f"module '{label}'" if i == 0 else f"'{label}:{'.'.join(parts[:i])}'"
        try:
            obj = getattr(obj, part)
            continue
        except AttributeError:
            pass
        except Exception as exc:  # a property or a lazy module __getattr__ that fails
            raise TargetError(
                f"{where}: looking up '{part}' on {owner} raised {describe_exception(exc)}"
            ) from exc
        if inspect.ismodule(obj):
            try:
                obj = _import_module(f"{obj.__name__}.{part}", where=where)
                continue
            except _ModuleMissing:
                pass
        names = [n for n in dir(obj) if not n.startswith("_")]
        close = closest(part, names)
        if close:
            fix = f"did you mean '{close}'?"
        elif 0 < len(names) <= 12:
            fix = f"it has: {', '.join(names)}"
        else:
            fix = "check the spelling"
        raise TargetError(f"{where}: {owner} has no attribute '{part}' ({fix})")
    return obj


# -- checking and calling ------------------------------------------------------------------------------------------


def check_call(
    obj: Any,
    kwargs: Mapping[str, Any],
    *,
    positional: int = 0,
    key: str,
    source: str,
    target: str | None = None,
    positional_names: Sequence[str] = (),
) -> None:
    """Check that ``obj(<positional args>, **kwargs)`` would bind, without calling it.

    Args:
        obj: the resolved target.
        kwargs: the spec's kwargs for it.
        positional: leading positional arguments clrfind supplies (1 for an optimizer's params, 3 for a step).
        key: the spec key of the target (``"model.target"``); kwargs problems are reported under the sibling
            ``"model.kwargs.<name>"``.
        source: the spec file name.
        target: the target string, for messages (defaults to the object's qualified name).
        positional_names: what the positional arguments are, for messages (``("model", "batch", "loss_fn")``).

    Raises:
        TargetError: not callable, unknown or missing arguments, too many positional arguments. Objects without an
            inspectable signature (some builtins) pass: the call itself will tell.
    """
    problems = call_problems(
        obj,
        kwargs,
        positional=positional,
        key=key,
        source=source,
        target=target,
        positional_names=positional_names,
    )
    if problems:
        raise TargetError.from_problems(problems)


def _class_of_module(obj: Any) -> str | None:
    """For a module named where its class was meant (`torch.optim.adam` for `torch.optim.Adam`), the class: a
    callable of the same name but for case, in the module or in its package."""
    if not isinstance(obj, types.ModuleType):
        return None
    package, _, last = obj.__name__.rpartition(".")
    for home in (obj, sys.modules.get(package)):
        for name in dir(home) if home is not None else ():
            if name.lower() == last.lower() and name != last and callable(getattr(home, name, None)):
                return f"{package}.{name}" if package else name
    return None


def call_problems(
    obj: Any,
    kwargs: Mapping[str, Any],
    *,
    positional: int = 0,
    key: str,
    source: str,
    target: str | None = None,
    positional_names: Sequence[str] = (),
) -> list[str]:
    """Every way the call would fail to bind, one line each (see `check_call`)."""
    label = target or _qualname(obj)
    where = f"{source}: {key}"
    kwargs_key = _kwargs_key(key)
    if not callable(obj):
        meant = _class_of_module(obj)
        fix = f"did you mean '{meant}'?" if meant else "point the target at a class or function"
        return [f"{where}: '{label}' is not callable (got {type(obj).__name__}): {fix}"]
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    params = list(sig.parameters.values())
    kinds = inspect.Parameter
    problems: list[str] = []

    filled: set[str] = set()
    left = positional
    for p in params:
        if left and p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD):
            filled.add(p.name)
            left -= 1
    if left and not any(p.kind is kinds.VAR_POSITIONAL for p in params):
        what = f" ({', '.join(positional_names)})" if positional_names else ""
        problems.append(
            f"{where}: '{label}' must accept {positional} positional arguments{what}, but its signature is {sig}"
        )

    keywords = [p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
    var_kw = any(p.kind is kinds.VAR_KEYWORD for p in params)
    positional_only = {p.name for p in params if p.kind is kinds.POSITIONAL_ONLY}
    suggested: set[str] = set()
    for name in kwargs:
        if name in filled:
            problems.append(f"{source}: {kwargs_key}.{name}: '{name}' is supplied by clrfind; remove it")
        elif name in keywords or (var_kw and name not in positional_only):
            continue
        else:
            close = closest(str(name), keywords)
            suggested.add(close or "")
            fix = (
                f"did you mean '{close}'?" if close else f"it accepts: {', '.join(keywords) or 'no keywords'}"
            )
            problems.append(f"{source}: {kwargs_key}.{name}: '{label}' has no argument '{name}' ({fix})")

    for p in params:
        required = p.default is inspect.Parameter.empty and p.kind not in (
            kinds.VAR_POSITIONAL,
            kinds.VAR_KEYWORD,
        )
        # A missing argument that a misspelt one was already pointed at is the same problem: report it once.
        if required and p.name not in filled and p.name not in kwargs and p.name not in suggested:
            problems.append(
                f"{source}: {kwargs_key}: '{label}' needs argument '{p.name}': add {p.name}: <value> under "
                f"{kwargs_key}"
            )
    if not problems:
        # Safety net for signatures the checks above do not model; normally binds.
        try:
            sig.bind(*([None] * positional), **kwargs)
        except TypeError as exc:
            problems.append(f"{where}: '{label}{sig}' cannot be called this way ({exc})")
    return problems


def instantiate(
    obj: Any,
    *args: Any,
    kwargs: Mapping[str, Any],
    key: str,
    source: str,
    target: str | None = None,
) -> Any:
    """`check_call`, then ``obj(*args, **kwargs)``.

    Raises:
        TargetError: the arguments do not fit the signature (nothing was called).
        SetupError: the user's callable raised; names the key and target, and chains the original exception.
    """
    check_call(obj, kwargs, positional=len(args), key=key, source=source, target=target)
    try:
        return obj(*args, **kwargs)
    except ClrfindError:
        raise
    except USER_FAILURES as exc:
        label = target or _qualname(obj)
        # A bad value among the arguments (momentum: fast) fails inside the callee: show what it was given.
        given = f"it was called with {short_repr(dict(kwargs), limit=120)}; " if kwargs else ""
        raise SetupError(
            f"{source}: {key} '{label}' raised {describe_exception(exc)}{_exc_where(exc)}",
            hint=f"{given}--debug shows the full traceback",
        ) from exc


def validate_spec_targets(loaded: LoadedSpec) -> dict[str, Any]:
    """Resolve every target of a spec and check its kwargs, before anything is built.

    Returns:
        The resolved target of each block the spec has: ``"model"``, ``"data.train"``, ``"data.val"``, ``"loss"``,
        ``"optimizer"``, ``"step"``, ``"setup"``.

    Raises:
        TargetError: the first problem, with ``(+N more problems)`` when there are more; all targets are checked.
    """
    spec = loaded.spec
    source = loaded.source
    data = spec.data
    blocks = [
        ("setup", spec.setup), ("model", spec.model), ("data.train", data and data.train),
        ("data.val", data and data.val), ("loss", spec.loss), ("optimizer", spec.optimizer), ("step", spec.step),
    ]  # fmt: skip
    refs = [(name, ref) for name, ref in blocks if ref is not None]

    resolved: dict[str, Any] = {}
    problems: list[str] = []
    for name, ref in refs:
        key = loaded.target_key(name)
        try:
            obj = resolve_target(ref.target, base_dir=loaded.base_dir, key=key, source=source)
        except TargetError as exc:
            problems.append(str(exc))
            continue
        resolved[name] = obj
        kwargs = dict(ref.kwargs)
        check = {"key": key, "source": source, "target": ref.target}
        if name == "optimizer":
            # The test passes lr (a factory that requires it, make_optimizer(params, lr, ...), binds), over any lr
            # the kwargs give: a training config copied as it is keeps its lr, and the run says where it sits.
            given = {**kwargs, "lr": 0.0} if callable(obj) and _accepts_keyword(obj, "lr") else kwargs
            problems += call_problems(obj, given, positional=1, positional_names=("params",), **check)
            if callable(obj) and not _accepts_keyword(obj, "lr"):
                problems.append(
                    f"{source}: {key}: '{ref.target}' has no lr argument, so the range test cannot set it: use an "
                    "optimizer that takes lr (torch.optim.SGD, Adam, AdamW, ...)"
                )
        elif name == "step":
            given = 3 if step_takes_loss(obj, kwargs) else 2
            problems += call_problems(
                obj, kwargs, positional=given, positional_names=_STEP_ARGS[:given], **check
            )
            if given == 2 and spec.loss is not None:
                problems.append(
                    f"{source}: {key}: '{ref.target}' takes (model, batch), no loss_fn, so the spec's loss: would "
                    "go unused: remove loss:, or give the step a third argument, loss_fn, and use it"
                )
        elif name == "loss" and is_loss_function(obj, kwargs):
            problems += call_problems(obj, kwargs, positional=2, positional_names=_LOSS_ARGS, **check)
        elif name.startswith("data.") and _is_ready_data(obj):
            # A ready Dataset/DataLoader instance is used as it is (see build); it cannot take kwargs.
            if kwargs:
                problems.append(
                    f"{source}: {_kwargs_key(key)}: '{ref.target}' is a {type(obj).__name__} instance, which takes "
                    "no kwargs: remove them or point the target at a function that builds it"
                )
        else:
            problems += call_problems(obj, kwargs, **check)
    if problems:
        raise TargetError.from_problems(problems)
    return resolved


def is_loss_function(obj: Any, kwargs: Mapping[str, Any]) -> bool:
    """True when a loss target is the loss itself (`torch.nn.functional.cross_entropy`, `fn(output, target)`), not a
    factory that makes one (`torch.nn.CrossEntropyLoss`, `make_loss(smoothing=0.1)`).

    A function, not a class, with at least two required positional parameters that `kwargs` leaves open: the
    output and the target. The kwargs are then bound to it rather than passed to a call that makes a loss.
    """
    if inspect.isclass(obj) or not callable(obj):
        return False
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    open_ = [p for p in params if p.kind in positional and p.default is p.empty and p.name not in kwargs]
    return len(open_) >= 2


def step_takes_loss(fn: Any, kwargs: Mapping[str, Any] | None = None) -> bool:
    """Whether a step function takes loss_fn: False for `fn(model, batch)`, a step that computes the loss itself
    (`model(**batch).loss`) and has no use for one. True when its signature cannot be read, or binds neither way
    (the three-argument check then says what is wrong)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    for given in (3, 2):
        try:
            sig.bind(*([None] * given), **(kwargs or {}))
        except TypeError:
            continue
        return given == 3
    return True


class _LossFreeStep:
    """A step `fn(model, batch)` called as every step is, `(model, batch, loss_fn)`; a class, not a closure, so
    that it pickles like the function it wraps."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, model: Any, batch: Any, loss_fn: Any = None) -> Any:
        return self.fn(model, batch)


def as_step(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A step function as the engine calls it, `(model, batch, loss_fn)`, whichever of the two forms it takes."""
    return fn if step_takes_loss(fn) else _LossFreeStep(fn)


def _accepts_keyword(obj: Any, name: str) -> bool:
    """True when `obj` takes `name` as a keyword, or when its signature cannot be inspected."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        (p.name == name and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD for p in params
    )


def _is_ready_data(obj: Any) -> bool:
    # Only a module that already imported torch can hand us a Dataset, so this never imports torch itself.
    tud = sys.modules.get("torch.utils.data")
    return tud is not None and isinstance(obj, (tud.Dataset, tud.DataLoader))


# -- messages ------------------------------------------------------------------------------------------------------


def _kwargs_key(key: str) -> str:
    """Where a target's arguments live in the spec: ``"model.target"`` -> ``"model.kwargs"``, and
    ``"model._target_"`` -> ``"model"`` (Hydra's arguments sit beside `_target_`)."""
    block, _, written = key.rpartition(".")
    return block if written in TARGET_ALIASES else f"{block}.kwargs"


def _qualname(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None)
    return f"{module}.{name}" if module and not module.startswith(USER_PACKAGE) else name


def _exc_where(exc: BaseException) -> str:
    """`` (at file.py:12)`` for the line to fix: the innermost frame of the user's own code, if there is one."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {Path(exc.filename).name}:{exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    library = tuple(p for p in {sysconfig.get_path(n) for n in ("stdlib", "purelib", "platlib")} if p)
    own = [f for f in frames if not f.filename.startswith(library) and Path(f.filename).parent != _HERE]
    chosen = (own or frames)[-1:] if frames else []
    return f" (at {Path(chosen[0].filename).name}:{chosen[0].lineno})" if chosen else ""
