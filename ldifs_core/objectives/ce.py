"""`ce`: plain fine-tuning, cross-entropy on the head's logits (the base class's loss)."""
from ldifs_core.objectives.base import Objective


class CrossEntropy(Objective):
    name = "ce"
    summary = "cross-entropy; image tower end to end + linear head on normalised features"
    label = "CE — plain fine-tuning"
    order = 0
    color, symbol = "#d62728", "circle"


OBJECTIVE = CrossEntropy
