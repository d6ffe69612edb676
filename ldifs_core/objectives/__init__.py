"""The fine-tuning objectives, one plugin module each, collected here.

A plugin is a module of this package (or of a folder named in $LDIFS_OBJECTIVES_PATH, separated like PATH) that
sets `OBJECTIVE` to its Objective subclass; the module's name is the objective's name. Its class declares
everything else (see base.Objective): summary, λ, options, how it trains and how plots draw it. The CLI, the app,
RunConfig, run identity and the README's table read them from `OBJECTIVE_TYPES`, so a new objective is one new
file. Importing this package never imports torch (base.deferred).
"""
from __future__ import annotations

import importlib
import os
import pkgutil

from ldifs_core.objectives.base import (Batch, Objective, TrainingSetup, multi_positive_cross_entropy,  # noqa: F401
                                        probe_head, text_head)

PATH_VARIABLE = "LDIFS_OBJECTIVES_PATH"
NOT_PLUGINS = ("base", "table")  # this package's own modules

__path__ += [folder for folder in os.environ.get(PATH_VARIABLE, "").split(os.pathsep) if folder]  # noqa: F821


def discover() -> dict[str, type[Objective]]:
    """Every plugin's objective by name, in their declared order."""
    found: dict[str, type[Objective]] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name in NOT_PLUGINS or module.name.startswith("_") or module.name in found:
            continue
        kind = getattr(importlib.import_module(f"{__name__}.{module.name}"), "OBJECTIVE", None)
        if not (isinstance(kind, type) and issubclass(kind, Objective)) or kind.name != module.name:
            raise ImportError(f"The objective plugin {module.module_finder.path}/{module.name}.py must set OBJECTIVE "
                              f"to an Objective subclass whose name is '{module.name}'.")
        found[kind.name] = kind
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


OBJECTIVE_TYPES: dict[str, type[Objective]] = discover()
