"""`plan_groups`: which actors a configuration becomes on a Ray cluster, and what each reserves."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config

DEFAULT_CPUS = 1.0  #: CPU cores an actor reserves per pipeline when ``resources:`` says nothing


@dataclass
class Group:
    """One Ray actor: the pipelines it runs (in file order) and the resources it reserves.

    Attributes:
        name: the ``group:`` name, or the pipeline's own name for a pipeline without one.
        pipelines: pipeline names.
        cpus, gpus: Ray ``num_cpus``/``num_gpus``: the sum of the pipelines' ``resources:``.
    """

    name: str
    pipelines: list[str] = field(default_factory=list)
    cpus: float = 0.0
    gpus: float = 0.0


def plan_groups(config: Config, names: list[str] | None = None) -> list[Group]:
    """The actors for ``config``'s pipelines (or just ``names``): one per ``group:`` value, one per
    pipeline without a group. A pipeline's ``resources:`` default to `DEFAULT_CPUS` CPUs and 0 GPUs."""
    groups: dict[str, Group] = {}
    for name, cfg in config.pipelines.items():
        if names is not None and name not in names:
            continue
        key = f"group:{cfg.group}" if cfg.group else name
        group = groups.setdefault(key, Group(cfg.group or name))
        group.pipelines.append(name)
        res = cfg.resources
        group.cpus += DEFAULT_CPUS if res is None else res.cpus
        group.gpus += 0.0 if res is None else res.gpus
    return list(groups.values())


__all__ = ["DEFAULT_CPUS", "Group", "plan_groups"]
