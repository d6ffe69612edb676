"""LDIFS Lab core: fine-tune CLIP image towers and measure concept forgetting. No UI code lives here."""

__all__ = ["LDIFSLoss", "ldifs_distance"]


def __getattr__(name: str):
    """`ldifs_core.LDIFSLoss` and `ldifs_core.ldifs_distance` load torch and open_clip on first use, so importing the
    package's light modules (config, store) stays fast for the app's first page."""
    if name == "LDIFSLoss":
        from ldifs_core.ldifs_loss import LDIFSLoss

        return LDIFSLoss
    if name == "ldifs_distance":
        from ldifs_core.ldifs import ldifs_distance

        return ldifs_distance
    raise AttributeError(f"module 'ldifs_core' has no attribute {name!r}")
