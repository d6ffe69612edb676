"""LDIFS Lab core: fine-tune CLIP image towers and measure concept forgetting. No UI code lives here."""
from ldifs_core.ldifs import ldifs_distance

__all__ = ["ldifs_distance"]
