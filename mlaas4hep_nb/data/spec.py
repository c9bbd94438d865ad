"""FeatureSpec: what each selected branch becomes as features (the model; `measure` computes it)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .paths import user_cache_dir
from .rootio import shape_name

__all__ = ["CONSTANT", "SPEC_VERSION", "BranchSpec", "FeatureSpec", "cache_dir", "constant_reason"]

SPEC_VERSION = 1
CONSTANT = "constant: "  # how spec.skipped explains a constant branch left out


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class BranchSpec:
    """One branch: flat or jagged, its pad length and the statistics of its finite values.

    A fixed-size array branch (``float[3]``) is not jagged: ``fixed`` is its
    length and ``pad`` the number of its values kept (all of them, or ``max_len``).
    """

    name: str
    dtype: str
    jagged: bool
    pad: int
    max_multiplicity: int
    count: int
    nonfinite: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    fixed: int | None = None

    @property
    def shape(self) -> str:
        """``"flat"``, ``"jagged"`` or ``"fixed[n]"``."""
        return shape_name(self.jagged, self.fixed)

    @property
    def constant(self) -> bool:
        """True when every finite value is the same, or there is none: no use as a feature."""
        return self.min is None or self.min == self.max

    @property
    def features(self) -> list[str]:
        if not self.jagged and self.fixed is None:
            return [self.name]
        return [f"{self.name}_{i}" for i in range(self.pad)]


@dataclass(frozen=True)
class FeatureSpec:
    """The feature layout of a selection: branches in order, each with its statistics."""

    tree: str
    branches: tuple[BranchSpec, ...]
    cut: str | None = None
    n_events: int = 0
    files: tuple[str, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str | None = None

    @property
    def features(self) -> list[str]:
        """Feature names: ``MET_pt``, ``Jet_pt_0`` ... ``Jet_pt_{pad-1}``."""
        return [name for branch in self.branches for name in branch.features]

    @property
    def n_features(self) -> int:
        return sum(branch.pad for branch in self.branches)

    @property
    def constants(self) -> dict[str, str]:
        """Constant branches, kept (named exactly) or left out, each with why."""
        found = {n: why for n, why in self.skipped.items() if why.startswith(CONSTANT)}
        found.update({b.name: constant_reason(b) for b in self.branches if b.constant})
        return found

    def branch(self, name: str) -> BranchSpec:
        for branch in self.branches:
            if branch.name == name:
                return branch
        msg = f"no branch {name!r} in this FeatureSpec; it has {[b.name for b in self.branches]}"
        raise KeyError(msg)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SPEC_VERSION,
            "tree": self.tree,
            "cut": self.cut,
            "n_events": self.n_events,
            "files": list(self.files),
            "skipped": dict(self.skipped),
            "fingerprint": self.fingerprint,
            "features": self.features,
            "branches": [asdict(branch) for branch in self.branches],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        if data.get("version") != SPEC_VERSION:
            msg = f"FeatureSpec version {data.get('version')!r} is not {SPEC_VERSION}"
            raise ValueError(msg)
        return cls(
            tree=data["tree"],
            branches=tuple(BranchSpec(**branch) for branch in data["branches"]),
            cut=data.get("cut"),
            n_events=data.get("n_events", 0),
            files=tuple(data.get("files", ())),
            skipped=dict(data.get("skipped", {})),
            fingerprint=data.get("fingerprint"),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureSpec:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary(self) -> str:
        """A text table: one row per branch, the name column as wide as the longest name.

        A constant branch (kept because it was named exactly) is flagged ``constant``.
        """
        name_width = max([len("branch"), *(len(b.name) for b in self.branches)])
        shape_width = max([len("jagged"), *(len(b.shape) for b in self.branches)])
        head = (
            f"{'branch':<{name_width}} {'kind':<{shape_width}} {'pad':>4} "
            f"{'min':>11} {'max':>11} {'mean':>11} {'std':>11} {'nan/inf':>7}"
        )
        rows = [head, "-" * len(head)]
        for b in self.branches:
            stats = " ".join(
                f"{v:>11.4g}" if v is not None else f"{'-':>11}"
                for v in (b.min, b.max, b.mean, b.std)
            )
            where = f"{b.name:<{name_width}} {b.shape:<{shape_width}} {b.pad:>4}"
            note = "  constant" if b.constant else ""
            rows.append(f"{where} {stats} {b.nonfinite:>7}{note}")
        rows.append(
            f"{self.n_features} features from {len(self.branches)} branches, "
            f"{self.n_events} events in {len(self.files)} files"
        )
        rows.extend(f"skipped {name}: {why}" for name, why in self.skipped.items())
        return "\n".join(rows)


def cache_dir() -> Path:
    """Where specs are cached: ``specs/`` in `user_cache_dir`."""
    return user_cache_dir() / "specs"


def constant_reason(branch: BranchSpec) -> str:
    """Why a constant branch is left out, for ``spec.skipped``."""
    if branch.min is None:
        return CONSTANT + "no finite value"
    return CONSTANT + f"every value is {branch.min:g}"
