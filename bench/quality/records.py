"""What one method run on one task and seed produced, as stored in the cache and the --json output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.quality.train import Outcome


@dataclass
class MethodRun:
    """One method on one task and seed: what it suggested, what its test cost (seconds, and optimizer steps when
    it ran one), and each candidate's outcome."""

    method: str
    task: str
    seed: int
    suggestion: dict[str, float | None]
    seconds: float
    outcomes: dict[str, Outcome]
    notes: list[str] = field(default_factory=list)
    steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "task": self.task, "seed": self.seed, "suggestion": self.suggestion,
            "seconds": self.seconds, "outcomes": {k: o.to_dict() for k, o in self.outcomes.items()},
            "notes": self.notes, "steps": self.steps,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodRun:
        outcomes = {k: Outcome.from_dict(o) for k, o in d["outcomes"].items()}
        return cls(
            d["method"],
            d["task"],
            d["seed"],
            d["suggestion"],
            d["seconds"],
            outcomes,
            d["notes"],
            d.get("steps"),
        )
