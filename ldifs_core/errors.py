"""The errors a user can cause. Front ends show `str(err)`; it always says what to do next."""


class LabError(Exception):
    """Base for every problem caused by input, environment or data rather than by a bug."""


class ModelUnavailable(LabError):
    """A model name, tag or checkpoint that cannot be loaded here."""


class BadCheckpoint(LabError):
    """A checkpoint file that is corrupt, of the wrong shape, or holds pickled code."""


class DatasetUnavailable(LabError):
    """A dataset that is unknown, not downloaded, or empty."""


class BankSourceMissing(LabError):
    """A package the concept-bank builder needs could not be fetched."""


class BadConfig(LabError):
    """A run configuration that cannot work (negative steps, unknown objective, ...)."""


class TrainingDiverged(LabError):
    """The loss became NaN or infinite."""


class RunNotFound(LabError):
    """A run id that the store does not know, or a run without the results asked for."""


class RunUnreadable(LabError):
    """A run whose stored files are corrupt, missing, or written by another version; its message starts with
    "unreadable: ". The other runs of the store are unaffected."""


class StoreUnavailable(LabError):
    """A run store that cannot be opened or written here: a file instead of a folder, an index that is not a
    database, a read-only folder asked to record a run, a full disk."""


class IndexUnreadable(StoreUnavailable):
    """A run index that cannot be read for another reason than a full disk, a lock or permissions (corrupt, not a
    database): the runs are safe in their folders, and `store rebuild-index` rebuilds it from them."""


class RunCancelled(Exception):
    """The user asked a run to stop; it is recorded as cancelled, not as failed."""


class ClusterUnavailable(LabError):
    """A Ray cluster that cannot be started or reached, or that has no node able to hold one trial."""


class LambdaGridUnreadable(LabError):
    """The precomputed λ grid (assets/lambda_grid.json) is missing or not of this version's format."""
