"""Fuzzing the two loaders of files a user (or anyone) hands clrfind: specs and results.

Whatever the file holds, loading it returns a value or raises one of clrfind's own errors (`ClrfindError`), and
returns within a time limit: no RecursionError, no MemoryError, no minutes spent expanding aliases. test_spec.py
fuzzes the spec's keys and values; this module aims at the YAML structure (anchors, aliases, merge keys, tags,
nesting) and at the results file and what export builds from it.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_SPEC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clrfind.errors import ClrfindError
from clrfind.export import build_schedule, render_schedule
from clrfind.results import Bounds, OptimizerRef, RangeTestResult, load_results, to_json
from clrfind.spec import load_spec

# Each call must return within this; the real ones take milliseconds (hypothesis' deadline checks each example).
LIMIT = timedelta(seconds=3)
# FUZZ_EXAMPLES=2000 runs a longer, random (not derandomized) search by hand.
EXAMPLES = os.environ.get("FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(EXAMPLES or 80),
    deadline=LIMIT,
    derandomize=EXAMPLES is None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# Pieces of YAML syntax, so that random sequences of them reach the composer and the alias handling, not just the
# scanner's first error.
TOKENS = [
    "{", "}", "[", "]", ", ", ": ", "- ", "\n", "\n  ", "&a ", "&b ", "*a", "*b", "<<: ", "!!str ", "!!int ",
    "!!python/object:os.system ", "? ", "|\n  ", ">\n  ", "'x'", '"y"', "model", "data", "target", "kwargs",
    "range_test", "steps", "seed", "1e5", "-1", "99999999999999999999999", "9" * 5000, ".inf", ".nan", "null",
    "true", "x", "#c", "%YAML 1.2\n", "---\n", "...\n", "\t", "\x00", "\ufeff",
]  # fmt: skip


def _load(path: Path, text: str) -> None:
    """Load `text` as a spec: a LoadedSpec or a ClrfindError, nothing else, and in time."""
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    started = time.perf_counter()
    try:
        load_spec(path)
    except ClrfindError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000  # one bounded line, whatever the file holds
    assert time.perf_counter() - started < LIMIT.total_seconds()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(pieces=st.lists(st.sampled_from(TOKENS), max_size=60))
def test_yaml_syntax_soup_loads_or_raises_a_clrfind_error(folder: Path, pieces: list[str]) -> None:
    _load(folder / "soup.yaml", "".join(pieces))


@FUZZ
@given(pieces=st.lists(st.sampled_from(TOKENS), max_size=20), at=st.integers(0, len(BASE_SPEC)))
def test_a_valid_spec_with_syntax_spliced_in(folder: Path, pieces: list[str], at: int) -> None:
    _load(folder / "spliced.yaml", BASE_SPEC[:at] + "".join(pieces) + BASE_SPEC[at:])


@FUZZ
@given(levels=st.integers(1, 14), width=st.integers(1, 14), mapping=st.booleans(), used=st.booleans())
def test_alias_expansion_of_any_shape_is_bounded(
    folder: Path, levels: int, width: int, mapping: bool, used: bool
) -> None:
    """Anchors each repeating the one before `width` times: 14**14 values at most, from a few hundred bytes."""
    lines = []
    for i in range(levels):
        items = [f"*a{i - 1}" if i else "lol"] * width
        body = (
            "{" + ", ".join(f"k{j}: {v}" for j, v in enumerate(items)) + "}"
            if mapping
            else f"[{', '.join(items)}]"
        )
        lines.append(f"  a{i}: &a{i} {body}")
    use = f"step: {{target: task.py:step, kwargs: {{x: *a{levels - 1}}}}}\n" if used else ""
    _load(folder / "bomb.yaml", BASE_SPEC + use + "x-anchors:\n" + "\n".join(lines) + "\n")


@FUZZ
@given(depth=st.integers(1, 3000), style=st.sampled_from(["[", "{a: ", "- "]))
def test_nesting_of_any_depth_is_bounded(folder: Path, depth: int, style: str) -> None:
    closer = {"[": "]", "{a: ": "}", "- ": ""}[style]
    _load(folder / "deep.yaml", BASE_SPEC + "x-deep:\n  " + style * depth + "1" + closer * depth + "\n")


# -- results ----------------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _valid_results() -> dict[str, Any]:
    lrs = [0.001 * 1.2**i for i in range(30)]
    result = RangeTestResult(
        clrfind_version="0.1.0", min_lr=lrs[0], max_lr=lrs[-1], planned_steps=30, lrs=lrs,
        losses=[2.0 - i * 0.05 for i in range(30)], smoothed=[2.0 - i * 0.05 for i in range(30)],
        stop_reason="completed", steps_per_epoch=10,
        bounds=Bounds(base_lr=0.004, max_lr=0.05, peak_lr=0.08, confidence="high"),
        optimizer=OptimizerRef(target="torch.optim.SGD", kwargs={"momentum": 0.9}),
    )  # fmt: skip
    return json.loads(to_json(result))


VALID_RESULTS = _valid_results()
# Key paths of the valid results, top level and one below, to aim edits at real fields.
PATHS = [(k,) for k in VALID_RESULTS] + [
    (k, sub) for k, v in VALID_RESULTS.items() if isinstance(v, dict) for sub in v
]


def _read(path: Path, text: str) -> None:
    """Load `text` as a results file, and export a schedule from it when it loads: values or ClrfindErrors only."""
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    started = time.perf_counter()
    try:
        result = load_results(path)
        for policy in ("triangular", "one-cycle", "cosine"):
            render_schedule(build_schedule(result, policy=policy, epochs=12), "python")
    except ClrfindError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000
    assert time.perf_counter() - started < LIMIT.total_seconds()


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(PATHS), JSON_VALUES | st.just("<delete>")), min_size=1, max_size=4
    )
)
def test_edited_results_load_or_raise_a_clrfind_error(
    folder: Path, edits: list[tuple[tuple[str, ...], Any]]
) -> None:
    raw = json.loads(json.dumps(VALID_RESULTS))
    for path, value in edits:
        node = raw
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if value == "<delete>":
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    _read(folder / "edited.json", json.dumps(raw))


def _nested_json(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


VALID_TEXT = json.dumps(VALID_RESULTS, indent=1)


@FUZZ
@given(
    text=st.text(max_size=300)
    | st.builds(_nested_json, st.integers(1, 50_000), st.sampled_from(["list", "dict"]))
    | st.builds(lambda cut: VALID_TEXT[:cut], st.integers(0, len(VALID_TEXT)))
    | st.sampled_from(
        ["NaN", "Infinity", "1e999", "-1e999", '{"schema_version": 3, "lrs": [NaN]}', "9" * 5000]
    )
)
def test_any_text_as_results_loads_or_raises_a_clrfind_error(folder: Path, text: str) -> None:
    _read(folder / "text.json", text)
