"""The one model loader: the embedded tiny CLIP, any open_clip (name, tag), or a local checkpoint file.

Everything goes through `open_clip.create_model_and_transforms`, so the embedded model loads exactly as
ViT-B-32 would. Failures a user can cause become `ModelUnavailable` / `BadCheckpoint` with advice.
"""
from __future__ import annotations

import copy
import itertools
import os
import pickle
import socket
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import torch
from torch.overrides import TorchFunctionMode

from ldifs_core.errors import BadCheckpoint, BadConfig, LabError, ModelUnavailable
from ldifs_core.paths import ASSETS_DIR

EMBEDDED_MODEL = "LabCLIP-ViT-28-p7"
EMBEDDED_CHECKPOINT = ASSETS_DIR / "model" / f"{EMBEDDED_MODEL}.safetensors"
EMBEDDED_HINT = f"The embedded default model ({EMBEDDED_MODEL}) needs no network."
READ_ONLY = "_ldifs_read_only"  # marks every module of a loaded (shared) model; private copies drop it


@dataclass(frozen=True)
class FoundationModel:
    """A loaded CLIP with what evaluation and training need to feed it.

    A loaded model is read-only: several threads (app sessions, the worker) share one, so nothing may tap,
    move or tune it. A run works on `private_copy()`, which it may hook and move, and trains a deep copy of it.
    """

    clip: open_clip.model.CLIP
    tokenizer: object
    name: str
    pretrained: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Names the loaded weights themselves (name, tag or file with its size and time), so what depends on θ₀ alone
    # (zero-shot heads) can be kept on disk across processes. None for other weights (with_clip): tuned or mixed
    # towers are never looked up in such a cache.
    weights_id: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({Path(self.pretrained).name if os.path.sep in self.pretrained else self.pretrained})"

    def private_copy(self, device: torch.device | str = "cpu") -> "FoundationModel":
        """This model's own module tree on `device` for one run (frozen, eval mode, no longer marked read-only):
        its own hooks, modes and device. On the device the model already lives on, the weights themselves are
        shared, not copied (a ViT-B-32 would otherwise cost 600 MB more per run): θ₀ is never written, and
        whatever trains is a deep copy of it."""
        tensors = itertools.chain(self.clip.parameters(), self.clip.buffers())
        same_device = torch.device(device) == next(self.clip.parameters()).device
        clip = copy.deepcopy(self.clip, {id(t): t for t in tensors} if same_device else None)
        for module in clip.modules():
            module.__dict__.pop(READ_ONLY, None)
        return replace(self, clip=clip.to(device).eval().requires_grad_(False))

    def with_clip(self, clip: torch.nn.Module) -> "FoundationModel":
        """The same tokenizer and preprocessing around other weights (a tuned or WiSE-FT mixed CLIP)."""
        return replace(self, clip=clip, weights_id=None)


def mark_read_only(clip: torch.nn.Module) -> None:
    """Frozen, eval mode, and marked so that tapping it fails loudly instead of racing other threads."""
    clip.eval().requires_grad_(False)
    for module in clip.modules():
        setattr(module, READ_ONLY, True)


def is_read_only(module: torch.nn.Module) -> bool:
    return getattr(module, READ_ONLY, False)


@lru_cache(maxsize=1)
def register_embedded_config() -> None:
    open_clip.add_model_config(ASSETS_DIR / "model")


def resolve(name: str | None, pretrained: str | None) -> tuple[str, str]:
    """Fill in the embedded default: no name means the embedded model and its committed checkpoint. An unknown
    model name is refused first (a tag cannot help it)."""
    register_embedded_config()
    name = name or EMBEDDED_MODEL
    if name not in open_clip.list_models():
        raise ModelUnavailable(unknown_model_message(name))
    if name == EMBEDDED_MODEL and not pretrained:
        pretrained = str(EMBEDDED_CHECKPOINT)
    if not pretrained:
        raise BadConfig(f"Model '{name}' needs a pretrained tag or a checkpoint path. "
                        f"Known tags: {', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'}.")
    return name, pretrained


def unknown_model_message(name: str) -> str:
    """'Unknown open_clip model', with the known names closest to `name` (case aside)."""
    import difflib

    names = {known.lower(): known for known in open_clip.list_models()}
    close = [names[match] for match in difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.6)]
    suggestion = f"Did you mean {' or '.join(close)}? " if close else ""
    return (f"Unknown open_clip model '{name}'. {suggestion}Pick one of open_clip.list_models() (for example "
            f"ViT-B-32). {EMBEDDED_HINT}")


def input_resolution(name: str | None) -> int:
    """The image side the model's encoder takes, from its open_clip config alone (no weights are loaded)."""
    size = vision_config(name)["image_size"]
    return size if isinstance(size, int) else size[0]


def tower_blocks(name: str | None) -> int | None:
    """How many blocks (ViT) or stages (ResNet) the model's image tower has, from its open_clip config alone; None
    for a tower the lab cannot tap by count (a timm tower)."""
    vision = vision_config(name)
    if vision.get("timm_model_name"):
        return None
    layers = vision.get("layers", 12)
    return len(layers) if isinstance(layers, (list, tuple)) else int(layers)


def vision_config(name: str | None) -> dict:
    register_embedded_config()
    cfg = open_clip.get_model_config(name or EMBEDDED_MODEL)
    if cfg is None:
        raise ModelUnavailable(unknown_model_message(name))
    return cfg["vision_cfg"]


def cached_weights_path(name: str, tag: str) -> Path | None:
    """Where the weights of an open_clip (name, tag) lie on this machine, or None if they would need a download."""
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        return None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        org, repo, *in_repo = cfg["hf_hub"].strip("/").split("/")  # "org/repo/" or "org/repo/file.bin"
        filenames = ["/".join(in_repo)] if in_repo else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for filename in filenames:
            try:
                hit = try_to_load_from_cache(f"{org}/{repo}", filename)
            except ValueError:  # an id the hub client cannot parse: treat as not cached
                return None
            if isinstance(hit, str):
                return Path(hit)
        return None
    if cfg.get("url"):
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        return path if path.is_file() else None
    return None


def weights_host_reachable(name: str, tag: str, timeout_s: float = 3.0) -> bool:
    """A quick connect to where the weights live: offline, fail in seconds rather than after a minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    host = "huggingface.co" if cfg.get("hf_hub") else urlparse(cfg.get("url", "")).hostname
    if not host:
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def weights_available(name: str | None, pretrained: str | None) -> bool:
    """True when loading would need no network: the embedded model, a local file, or a cached tag."""
    try:
        name, pretrained = resolve(name, pretrained)
    except LabError:
        return False
    return Path(pretrained).is_file() or cached_weights_path(name, pretrained) is not None


def checked_source(name: str | None, pretrained: str | None) -> tuple[str, str]:
    """The (name, tag or file) `load_model` would load, resolved; refuses without reading weights what cannot
    load: an unknown model or tag, a missing file, a folder, a file that is not a checkpoint by its first bytes."""
    name, pretrained = resolve(name, pretrained)
    path = Path(pretrained).expanduser()
    if path.is_dir():
        raise BadCheckpoint(f"'{pretrained}' is a folder. Give the checkpoint file inside it (.pt, .pth, .bin, "
                            f".safetensors).")
    if path.is_file():
        if kind := not_a_checkpoint(path):
            raise BadCheckpoint(f"'{pretrained}' is not a checkpoint: it is {kind}. Give a file of model weights "
                                f"saved with torch.save (.pt, .pth, .bin) or safetensors (.safetensors).")
        return name, pretrained
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        looks_like_path = os.path.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
        if path == EMBEDDED_CHECKPOINT:
            raise ModelUnavailable(f"The embedded checkpoint {EMBEDDED_CHECKPOINT} is missing. Restore it with "
                                   f"`git checkout -- assets/model` or rebuild it with `make pretrain`.")
        if looks_like_path:
            raise ModelUnavailable(f"Checkpoint file '{pretrained}' does not exist. Check the path. {EMBEDDED_HINT}")
        raise ModelUnavailable(f"Pretrained weights: unknown tag '{pretrained}' of {name} (and no checkpoint file of "
                               f"that name here). Known tags: {', '.join(tags) or 'none'}.")
    return name, pretrained


def load_model(name: str | None = None, pretrained: str | None = None) -> FoundationModel:
    """Load a CLIP on the CPU, read-only; runs take `private_copy(device)` of it."""
    name, pretrained = checked_source(name, pretrained)
    is_file = Path(pretrained).is_file()
    if not is_file and cached_weights_path(name, pretrained) is None and not weights_host_reachable(name, pretrained):
        raise ModelUnavailable(offline_message(name, pretrained))
    try:
        with NoRandomInit():  # every tensor is then overwritten by the weights, or the load fails on a missing one
            clip, _, _ = open_clip.create_model_and_transforms(name, pretrained=pretrained, weights_only=True)
    except Exception as err:  # open_clip and torch.load raise many types; each maps to advice below
        raise load_error(err, name, pretrained, is_file) from None
    mark_read_only(clip)
    cfg = clip.visual.preprocess_cfg
    size = cfg["size"]
    return FoundationModel(clip, open_clip.get_tokenizer(name), name, pretrained,
                           size if isinstance(size, int) else size[0], tuple(cfg["mean"]), tuple(cfg["std"]),
                           weights_identity(name, pretrained))


class NoRandomInit(TorchFunctionMode):
    """Builds modules without drawing their random initial values (random fills are skipped, random tensors are
    left uninitialised): wasted work when weights are loaded over them (1.8 s of a ViT-B-32 on 2 CPU cores), and
    it would move the global generator a caller seeded. Only for construction followed by a strict load."""

    FILLS = frozenset({
        torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.random_, torch.Tensor.exponential_,
        torch.nn.init.normal_, torch.nn.init.uniform_, torch.nn.init.trunc_normal_, torch.nn.init.kaiming_uniform_,
        torch.nn.init.kaiming_normal_, torch.nn.init.xavier_uniform_, torch.nn.init.xavier_normal_,
        torch.nn.init.orthogonal_})
    DRAWS = frozenset({torch.randn, torch.rand})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.FILLS:
            return args[0] if args else kwargs["tensor"]
        if func in self.DRAWS:
            kwargs.pop("generator", None)
            return torch.empty(*args, **kwargs)
        return func(*args, **kwargs)


def weights_identity(name: str, pretrained: str) -> str:
    """A local file is named by its resolved path, size and modification time (a rewritten checkpoint is new
    weights); a zoo tag by itself (open_clip pins each tag to one file)."""
    path = Path(pretrained)
    if path.is_file():
        stat = path.stat()
        return f"{name}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return f"{name}|{pretrained}"


def load_error(err: Exception, name: str, pretrained: str, is_file: bool) -> Exception:
    text = str(err)
    first_line = (text.splitlines() or [type(err).__name__])[0][:200]
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        return BadCheckpoint(f"'{pretrained}' holds pickled objects, not plain tensors, so it was not loaded "
                             f"(loading it could run code). Re-save it as a state_dict: "
                             f"torch.save(model.state_dict(), path).")
    if is_file and ("size mismatch" in text or "Missing key" in text or "Unexpected key" in text):
        return BadCheckpoint(f"'{pretrained}' does not hold weights for {name}: its tensors do not match that "
                             f"architecture. Pick the model name the checkpoint was trained with.")
    if is_file:
        return BadCheckpoint(f"'{pretrained}' could not be read as a checkpoint (the file looks corrupt or is not "
                             f"a PyTorch/safetensors file): {first_line}")
    return ModelUnavailable(offline_message(name, pretrained) + f" Detail: {first_line}")


def offline_message(name: str, tag: str) -> str:
    return (f"The weights of {name} ({tag}) are not on this machine and could not be downloaded. "
            f"Connect to the network once so open_clip can cache them, or use a local checkpoint file. "
            f"{EMBEDDED_HINT}")


FILE_SIGNATURES = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                   (b"BM", "a BMP image"), (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"))


def not_a_checkpoint(path: Path) -> str | None:
    """What a file is when its first bytes show it cannot hold weights ('a PNG image', 'a text file', ...), or None
    when it may: torch.save writes a zip archive (or, before PyTorch 1.6, a pickle), safetensors an 8-byte header
    length followed by its JSON header."""
    with open(path, "rb") as file:
        head = file.read(9)
    size = path.stat().st_size
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04") or head[0] == 0x80:  # zip (torch.save, .npz) or pickle protocol >= 2
        return None
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size:  # safetensors
        return None
    for signature, kind in FILE_SIGNATURES:
        if head.startswith(signature):
            return kind
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"):
        return f"a {path.suffix.lower()[1:].upper()} image"
    return "a text file" if head.isascii() else f"a file of another kind ({path.suffix or 'no extension'})"


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU; an explicit request must be available here."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BadConfig("Device 'cuda' was asked for but no CUDA GPU is visible here. Use --device cpu or auto.")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BadConfig("Device 'mps' was asked for but Apple MPS is not available here. Use --device cpu or auto.")
    if requested not in ("cpu", "mps") and not requested.startswith("cuda"):
        raise BadConfig(f"Unknown device '{requested}'. Use auto, cpu, cuda or mps.")
    return torch.device(requested)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
