"""How long a run will take here, from the runs this machine has finished: no claim the machine does not keep.

A fixed "about a minute" was wrong by a factor of 47 on a loaded machine; the store's finished runs measured what
this machine does. Training time scales with steps × images per step (the measured time per image of the same
model), the rest (loading, evaluation) with the number of datasets measured. None when no run of the model has
finished here: front ends then say so and show the live ETA once the run starts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from ldifs_core.config import RunConfig
from ldifs_core.datasets import available_bank
from ldifs_core.errors import LabError

RECENT = 5  # finished runs of the store read for an estimate (the newest: the machine as it is now)
NO_ESTIMATE = "no finished run here yet to estimate from; a started run shows its own ETA"


@dataclass(frozen=True)
class Estimate:
    seconds: float
    runs: int  # how many finished runs it is based on

    def describe(self) -> str:
        minutes = self.seconds / 60
        took = f"about {self.seconds:.0f} s" if minutes < 1.5 else f"about {minutes:.0f} min"
        return f"{took} on this machine (measured from its last {self.runs} finished run{'s' * (self.runs > 1)})"


def datasets_measured(cfg: RunConfig) -> int:
    return 1 + len(cfg.forgetting_datasets(available_bank()))


def estimate(cfg: RunConfig, finished: Sequence[tuple[RunConfig, dict]]) -> Estimate | None:
    """The time `cfg` should take, from `finished` runs' (config, metrics timings) of the same model; None without
    one that reports its training time."""
    same = [(done, timings) for done, timings in finished
            if (done.model, done.pretrained) == (cfg.model, cfg.pretrained)
            and {"train_s", "total_s"} <= set(timings) and done.steps > 0]
    if not same:
        return None
    per_image = median(t["train_s"] / (done.steps * done.batch_size) for done, t in same)
    per_dataset = median(max(0.0, t["total_s"] - t["train_s"]) / datasets_measured(done) for done, t in same)
    return Estimate(per_image * cfg.steps * cfg.batch_size + per_dataset * datasets_measured(cfg), len(same))


def finished_timings(store, limit: int = RECENT) -> list[tuple[RunConfig, dict]]:
    """The newest finished runs' (config, timings) in `store`; unreadable ones are left out."""
    found = []
    for record in store.list(status="done")[:limit]:
        try:
            found.append((record.config, store.metrics(record.run_id)["timings"]))
        except (LabError, KeyError, TypeError):
            continue
    return found


def describe(cfgs: Sequence[RunConfig], store) -> str:
    """How long `cfgs`, run one after another, should take here, in words."""
    finished = finished_timings(store)
    estimates = [estimate(cfg, finished) for cfg in cfgs]
    if not estimates or None in estimates:
        return NO_ESTIMATE
    return Estimate(sum(e.seconds for e in estimates), min(e.runs for e in estimates)).describe()
