"""Selection: what the Browser hands to code (labelled files, tree, branches, options, specs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .spec import FeatureSpec
    from .stream import DataStream

__all__ = ["LABEL_ALIAS", "Selection"]

#: the alias that holds each event's class when an expression gives it
LABEL_ALIAS = "class_label"


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class Selection:
    """What the Browser hands to code: labelled files, tree, branches, options and the specs.

    ``files`` maps each class (0..K-1) to its files; or, when ``label`` is an
    expression giving each event's class, it lists the files. ``branches`` are
    in the tree's order (empty: every supported branch); ``aliases`` are the
    computed features, ``{label: {name: expression}}`` or ``{name: expression}``;
    ``spec`` is None until computed for exactly this selection.
    """

    files: dict[int, list[str]] | list[str]
    tree: str
    branches: list[str] = field(default_factory=list)
    max_len: int | None = None
    cut: str | None = None
    spec: FeatureSpec | None = None
    aliases: dict[Any, Any] = field(default_factory=dict)
    label: str | None = None

    def sources(self) -> dict[int, list[str]] | list[str]:
        """The first argument of `DataStream` and `compute_specs`."""
        return self.files

    def stream_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `DataStream` for this selection (all but the sources)."""
        kwargs: dict[str, Any] = {
            "tree": self.tree,
            "branches": self.branches or None,
            "max_len": self.max_len,
            "cut": self.cut,
            "aliases": dict(self.aliases) or None,
        }
        if self.label is not None:
            kwargs["label"] = LABEL_ALIAS
            kwargs["aliases"] = {**self.aliases, LABEL_ALIAS: self.label}
        if self.spec is not None:
            kwargs["specs"] = self.spec
        return kwargs

    def to_stream(self, **kwargs: Any) -> DataStream:
        """A `DataStream` over these files; ``kwargs`` add to or override the selection."""
        from .stream import DataStream

        if self.label is None and len(self.files) < 2:
            have = f"only class {sorted(self.files)}" if self.files else "no labelled files"
            msg = (
                f"training needs files of at least two classes, and there are {have}: "
                "assign labels to the files (Browser labels editor, or Browser(labels=...)), "
                "or give each event's class by an expression (per event)"
            )
            raise ValueError(msg)
        return DataStream(self.files, **{**self.stream_kwargs(), **kwargs})

    def describe(self) -> str:
        """One line: the files of each class, tree, branches, aliases and the specs."""
        if self.label is not None:
            where = f"{len(self.files)} file(s), each event's class = {self.label}"
        else:
            by_class = cast("dict[int, list[str]]", self.files)  # no label: files by class
            classes = {label: len(paths) for label, paths in by_class.items() if paths}
            if not classes:
                return "no labelled files yet: assign classes in the Browser's Labels"
            where = "files per class " + ", ".join(f"{k}: {n}" for k, n in classes.items())
        branches = f"{len(self.branches)} branches" if self.branches else "every usable branch"
        per_class = all(isinstance(value, Mapping) for value in self.aliases.values())
        names = {n for value in self.aliases.values() for n in value} if per_class else self.aliases
        aliases = f" ({len(names)} aliases)" if names else ""
        spec = f"{self.spec.n_features} features" if self.spec else "specs not computed yet"
        return f"{where}; tree {self.tree!r}; {branches}{aliases}; {spec}"

    def to_dict(self) -> dict[str, Any]:
        files = (
            {label: list(paths) for label, paths in self.files.items()}
            if isinstance(self.files, Mapping)
            else list(self.files)
        )
        return {
            "files": files,
            "tree": self.tree,
            "branches": list(self.branches),
            "max_len": self.max_len,
            "cut": self.cut,
            "aliases": dict(self.aliases),
            "label": self.label,
            "spec": self.spec.to_dict() if self.spec is not None else None,
        }
