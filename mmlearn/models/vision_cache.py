"""Per-image cache of the frozen vision side's output (`model.vision_cache`), so that later epochs skip
the vision tower for images already seen.

What is cached is the call each family's forward makes to turn pixels into features, and its output is
cut per image: `get_image_features` (vision tower + projector) for Qwen2-VL, Qwen2.5-VL, LLaVA,
PaliGemma 2 and SmolVLM (Idefics3, per image tile), and the vision tower alone for Mllama and IDEFICS,
whose forwards call it directly (their projector / perceiver keeps running, so it may train). A batch's
images are hashed (pixel content, shape and dtype, plus the family's own per-image inputs such as
Qwen's `image_grid_thw` or Idefics3's pixel mask), the misses are computed in one call, and the output
is put back together in the batch's order. The hash is xxh3-128 (about 10 GB/s, so that hashing a
Qwen2-VL image of 2048 patches takes ~1 ms, well under the vision forward it saves; 128 bits make an
accidental collision negligible). Anything that changes the pixels (processor settings, image
size, augmentation) changes the key; the model side enters the key as a fingerprint of the cached
weights and config, the call's settings (e.g. LLaVA's `vision_feature_layer`) and the autocast state.

This is only valid when everything the cached call computes is frozen and deterministic: the towers it
covers must be `frozen` in `peft.towers`, none of their parameters may require grad, and they may have
no dropout; otherwise the cache is refused when the module is built. Cached tensors are leaves without
grad (nothing upstream of them trains), kept on CPU or on disk, and moved to the model's device on use.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import xxhash
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling

from mmlearn.models.towers import TowerPlan, tower_of

log = logging.getLogger(__name__)
KEYS = ("enabled", "directory", "max_gb")
_VOLATILE_CONFIG_KEYS = {
    "text_config",
    "transformers_version",
    "use_cache",
    "architectures",
    "dtype",
    "torch_dtype",
}


@dataclass(frozen=True)
class VisionCacheSettings:
    """`model.vision_cache` as read from the config (its defaults live in conf/model/<family>.yaml)."""

    enabled: bool
    directory: str | None  # None: CPU memory; a path: one safetensors file per image there
    max_gb: float | None  # stored features at most; beyond it new images are computed, never stored

    @classmethod
    def from_config(cls, node: dict) -> VisionCacheSettings:
        if set(node) != set(KEYS):
            raise ValueError(f"model.vision_cache must set exactly {list(KEYS)}, got {sorted(node)}")
        if node["max_gb"] is not None and node["max_gb"] < 0:
            raise ValueError(f"model.vision_cache.max_gb must be >= 0 or null, got {node['max_gb']}")
        return cls(**node)

    @property
    def max_bytes(self) -> int | None:
        return None if self.max_gb is None else int(self.max_gb * 2**30)


# --- families ----------------------------------------------------------------------------------------
class _Family:
    """How one family's image call is cut into images and put back together.

    `owner(base)` is the object whose `attribute` is replaced; `classes` are the class names it may have;
    `covers` the towers whose weights the cached call uses; `inputs` the tensor arguments cut per image;
    `options` the other arguments it understands (anything else set makes the call bypass the cache)."""

    classes: tuple[str, ...] = ()
    attribute = "get_image_features"
    covers: tuple[str, ...] = ("vision", "projector")
    inputs: tuple[str, ...] = ("pixel_values",)
    options: tuple[str, ...] = ()
    what = "get_image_features (vision tower and projector)"

    def owner(self, base):
        return base.model

    def settings(self, config, args: dict) -> dict | None:
        """The call's settings that enter the key, or None when this call cannot be cached."""
        return {}

    def split(self, args: dict) -> list[tuple[torch.Tensor, ...]]:
        """Each image's share of the per-image inputs, in batch order."""
        return [(x,) for x in args["pixel_values"].split(1)]

    def compute(self, call, items: list[tuple], settings: dict) -> list[torch.Tensor]:
        """The original call on the given images only: one feature tensor per image."""
        raise NotImplementedError

    def join(self, features: list[torch.Tensor], args: dict):
        """The call's output for the whole batch, as the model's forward reads it."""
        raise NotImplementedError


class _Qwen(_Family):
    """Flattened patches of all images, `image_grid_thw` rows give each image's patch count; the merger
    sits inside `model.visual`. Vision attention is per image (cu_seqlens), so images are independent."""

    classes = ("Qwen2VLModel", "Qwen2_5_VLModel")
    inputs = ("pixel_values", "image_grid_thw")
    what = "get_image_features (model.visual, merger included)"

    def settings(self, config, args):
        return None if args.get("image_grid_thw") is None else {}

    def split(self, args):
        grid = args["image_grid_thw"]
        return list(zip(args["pixel_values"].split(grid.prod(-1).tolist()), grid.split(1), strict=True))

    def compute(self, call, items, settings):
        out = call(
            pixel_values=torch.cat([p for p, _ in items]),
            image_grid_thw=torch.cat([g for _, g in items]),
            return_dict=True,
        )
        return list(out.pooler_output)

    def join(self, features, args):
        return BaseModelOutputWithPooling(pooler_output=tuple(features))


class _Llava(_Family):
    classes = ("LlavaModel",)
    options = ("vision_feature_layer", "vision_feature_select_strategy", "image_sizes")

    def settings(self, config, args):
        if args.get("image_sizes") is not None:
            return None
        layer, strategy = args.get("vision_feature_layer"), args.get("vision_feature_select_strategy")
        return {
            "vision_feature_layer": config.vision_feature_layer if layer is None else layer,
            "vision_feature_select_strategy": config.vision_feature_select_strategy
            if strategy is None
            else strategy,
        }

    def compute(self, call, items, settings):
        out = call(pixel_values=torch.cat([p for (p,) in items]), return_dict=True, **settings)
        return list(out.pooler_output)

    def join(self, features, args):
        return BaseModelOutputWithPooling(pooler_output=list(features))


class _PaliGemma(_Family):
    classes = ("PaliGemmaModel",)

    def compute(self, call, items, settings):
        return list(call(pixel_values=torch.cat([p for (p,) in items]), return_dict=True).pooler_output)

    def join(self, features, args):
        return BaseModelOutputWithPooling(pooler_output=torch.stack(features))


class _Idefics3(_Family):
    """(batch, tiles, C, H, W) with all-zero padding tiles; each real tile is encoded on its own (with
    its pixel mask), so the cache holds tiles: an image is its tiles plus the global one."""

    classes = ("Idefics3Model",)
    inputs = ("pixel_values", "pixel_attention_mask")
    what = "get_image_features (vision tower and connector), per image tile"

    @staticmethod
    def _real(pixel_values: torch.Tensor) -> torch.Tensor:
        """The tiles the model encodes: as in Idefics3Model, padding tiles are exactly zero."""
        return (pixel_values == 0.0).sum(dim=(-1, -2, -3)) != pixel_values.shape[2:].numel()

    def settings(self, config, args):
        return {} if bool(self._real(args["pixel_values"]).any()) else None

    def split(self, args):
        pixels, mask = args["pixel_values"], args.get("pixel_attention_mask")
        real = self._real(pixels).tolist()
        return [
            (pixels[b, t],) if mask is None else (pixels[b, t], mask[b, t])
            for b, row in enumerate(real)
            for t, is_real in enumerate(row)
            if is_real
        ]

    def compute(self, call, items, settings):
        mask = torch.stack([i[1] for i in items])[:, None] if len(items[0]) == 2 else None
        pixels = torch.stack([i[0] for i in items])[:, None]
        return list(call(pixel_values=pixels, pixel_attention_mask=mask, return_dict=True).pooler_output)

    def join(self, features, args):
        counts = self._real(args["pixel_values"]).sum(dim=1).tolist()
        width, out, start = features[0].shape[-1], [], 0
        for n in counts:
            part = features[start : start + n]
            out.append(torch.cat(part) if part else features[0].new_zeros((0, width)))
            start += n
        return BaseModelOutputWithPooling(pooler_output=out)


class _Mllama(_Family):
    """The forward calls `model.vision_model` directly on (batch, images, tiles, C, H, W); the projector
    runs after it and is not cached. Each image's tiles attend to each other, images do not."""

    classes = ("MllamaVisionModel",)
    attribute = "forward"
    covers = ("vision",)
    inputs = ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")
    what = "model.vision_model (the projector is not cached)"

    def owner(self, base):
        return base.model.vision_model

    def split(self, args):
        pixels, ids, mask = (args[k] for k in self.inputs)
        return [
            (pixels[b, m], ids[b, m : m + 1], mask[b, m])
            for b in range(pixels.shape[0])
            for m in range(pixels.shape[1])
        ]

    def compute(self, call, items, settings):
        out = call(
            pixel_values=torch.stack([p for p, _, _ in items])[:, None],
            aspect_ratio_ids=torch.stack([i for _, i, _ in items]),
            aspect_ratio_mask=torch.stack([m for _, _, m in items])[:, None],
        )
        return list(out.last_hidden_state[:, 0])

    def join(self, features, args):
        batch, images = args["pixel_values"].shape[:2]
        return BaseModelOutput(
            last_hidden_state=torch.stack(features).reshape(batch, images, *features[0].shape)
        )


class _Idefics(_Family):
    """The forward calls `model.vision_model` directly on (batch x images, C, H, W) and reads only
    `last_hidden_state`; the perceiver resampler runs after it and is not cached."""

    classes = ("IdeficsVisionTransformer",)
    attribute = "forward"
    covers = ("vision",)
    options = ("interpolate_pos_encoding",)
    what = "model.vision_model (the perceiver resampler is not cached)"

    def owner(self, base):
        return base.model.vision_model

    def settings(self, config, args):
        return {"interpolate_pos_encoding": bool(args.get("interpolate_pos_encoding"))}

    def compute(self, call, items, settings):
        out = call(pixel_values=torch.cat([p for (p,) in items]), **settings)
        return list(out.last_hidden_state)

    def join(self, features, args):
        return BaseModelOutputWithPooling(last_hidden_state=torch.stack(features))


FAMILIES: dict[str, _Family] = {
    "qwen2vl": _Qwen(),
    "qwen2_5vl": _Qwen(),
    "llava": _Llava(),
    "paligemma2": _PaliGemma(),
    "smolvlm": _Idefics3(),
    "mllama": _Mllama(),
    "idefics": _Idefics(),
}


# --- where features are kept ---------------------------------------------------------------------------
def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _to_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A compact CPU copy that owns its storage (a slice would keep the whole batch's output alive)."""
    return torch.empty(tensor.shape, dtype=tensor.dtype).copy_(tensor.detach())


class MemoryStore:
    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.data: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: str) -> torch.Tensor | None:
        return self.data.get(key)

    def put(self, key: str, tensor: torch.Tensor) -> bool:
        if key in self.data:
            return True
        if self.max_bytes is not None and self.bytes + _nbytes(tensor) > self.max_bytes:
            return False
        self.data[key] = _to_cpu(tensor)
        self.bytes += _nbytes(tensor)
        return True


class DiskStore:
    """One safetensors file per image under `directory/<2 hex>/<key>.safetensors`, written atomically
    (processes sharing the directory never read a half-written file). The size limit counts what the
    directory already holds when the run starts."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int | None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        files = list(self.directory.glob("*/*.safetensors"))
        self.bytes = sum(f.stat().st_size for f in files)
        self.count = len(files)

    def __len__(self) -> int:
        return self.count

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        path = self._path(key)
        return load_file(path)["features"] if path.is_file() else None

    def put(self, key: str, tensor: torch.Tensor) -> bool:
        path = self._path(key)
        if path.is_file():
            return True
        if self.max_bytes is not None and self.bytes + _nbytes(tensor) > self.max_bytes:
            return False
        path.parent.mkdir(exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{key}.", dir=path.parent)
        os.close(handle)
        try:
            save_file({"features": _to_cpu(tensor)}, staging)
            os.replace(staging, path)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
        self.bytes += path.stat().st_size
        self.count += 1
        return True


# --- the cache -----------------------------------------------------------------------------------------
@dataclass
class CacheStats:
    hits: int = 0  # images whose features came from the store
    computed: int = 0  # images the vision side encoded (misses)
    not_stored: int = 0  # computed images the size limit kept out of the store
    bypassed_calls: int = 0  # calls with arguments the cache does not handle (run uncached)
    calls: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / max(self.hits + self.computed, 1)


def _tensor_bytes(tensor: torch.Tensor):
    flat = tensor.detach().reshape(-1)
    return flat.cpu().contiguous().view(torch.uint8).numpy()


class VisionFeatureCache:
    """Replaces `owner.<attribute>` (an instance attribute, so the class and other models are untouched)
    with a per-image cached version of the same call. `remove()` puts the original back."""

    def __init__(self, family: str, owner, store, fingerprint: bytes, guarded: list[nn.Parameter], config):
        self.family_name = family
        self.family = FAMILIES[family]
        self.owner = owner
        self.store = store
        self.fingerprint = fingerprint
        self.guarded = guarded
        self.config = config
        self.stats = CacheStats()

    # The class's function, called on the owner: the cache never holds a bound method of an object
    # whose attribute it replaces, so pickling the model (spawned DDP workers) stays well-founded.
    def _original(self, *args, **kwargs):
        return getattr(type(self.owner), self.family.attribute)(self.owner, *args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        """The original's signature: generation reads it to pick the image arguments."""
        return inspect.signature(getattr(self.owner.__class__, self.family.attribute).__get__(self.owner))

    def install(self) -> VisionFeatureCache:
        current = self.owner.__dict__.get(self.family.attribute)
        if current is not None and current is not self:  # e.g. an accelerate hook, or a second cache
            raise RuntimeError(
                f"{type(self.owner).__name__}.{self.family.attribute} is already replaced on this model "
                f"({current!r}); model.vision_cache would drop that"
            )
        setattr(self.owner, self.family.attribute, self)
        return self

    def remove(self) -> None:
        if self.owner.__dict__.get(self.family.attribute) is self:
            delattr(self.owner, self.family.attribute)

    def _arguments(self, args, kwargs) -> dict:
        function = getattr(type(self.owner), self.family.attribute)
        bound = inspect.signature(function).bind(self.owner, *args, **kwargs).arguments
        named = {k: v for k, v in bound.items() if k not in ("self", "kwargs")}
        return {**named, **bound.get("kwargs", {})}

    def __call__(self, *args, **kwargs):
        arguments = self._arguments(args, kwargs)
        return_dict = arguments.pop("return_dict", None)
        family = self.family
        unknown = {
            k
            for k, v in arguments.items()
            if k not in family.inputs + family.options and v is not None and v is not False
        }
        cacheable = not unknown and arguments.get("pixel_values") is not None
        settings = family.settings(self.config, arguments) if cacheable else None
        if settings is None:
            self.stats.bypassed_calls += 1
            return self._original(*args, **kwargs)
        trainable = [p for p in self.guarded if p.requires_grad]
        if trainable:
            raise RuntimeError(
                f"model.vision_cache: {len(trainable)} parameters of the cached {family.what} require grad; "
                "the cache is only valid while they are frozen"
            )
        self.stats.calls += 1
        device = arguments["pixel_values"].device
        items = family.split(arguments)
        keys = self._keys(arguments, settings, device)
        features: list[torch.Tensor | None] = [None] * len(items)
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            stored = self.store.get(key)
            if stored is None:
                missing.setdefault(key, []).append(i)
            else:
                features[i] = stored.to(device, non_blocking=True)
        if missing:
            computed = family.compute(self._original, [items[idx[0]] for idx in missing.values()], settings)
            for (key, idx), tensor in zip(missing.items(), computed, strict=True):
                if not self.store.put(key, tensor):
                    self.stats.not_stored += 1
                for i in idx:
                    features[i] = tensor
        self.stats.computed += len(missing)
        self.stats.hits += len(items) - len(missing)
        out = family.join(features, arguments)
        return out.to_tuple() if return_dict is False else out

    def _keys(self, arguments: dict, settings: dict, device: torch.device) -> list[str]:
        on_cpu = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in arguments.items()}
        autocast = (
            [str(torch.get_autocast_dtype(device.type))] if torch.is_autocast_enabled(device.type) else []
        )
        prefix = self.fingerprint + json.dumps([settings, autocast], sort_keys=True, default=str).encode()
        keys = []
        for item in self.family.split(on_cpu):
            digest = xxhash.xxh3_128(prefix)
            for tensor in item:
                digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
                digest.update(_tensor_bytes(tensor))
            keys.append(digest.hexdigest())
        return keys

    @property
    def where(self) -> str:
        limit = (
            "no size limit"
            if self.store.max_bytes is None
            else f"at most {self.store.max_bytes / 2**30:g} GiB"
        )
        place = f"in {self.store.directory}" if isinstance(self.store, DiskStore) else "in CPU memory"
        return f"{place}, {limit}"

    def describe(self) -> str:
        s = self.stats
        return (
            f"vision cache ({self.family.what}), so far: {s.hits} hits, {s.computed} computed "
            f"(hit rate {s.hit_rate:.1%}), {len(self.store)} stored {self.where} "
            f"({self.store.bytes / 2**20:.1f} MiB), {s.not_stored} not stored (size limit)"
            + (f", {s.bypassed_calls} calls bypassed" if s.bypassed_calls else "")
        )


# --- building ------------------------------------------------------------------------------------------
def _dropout(modules: list[nn.Module]) -> list[str]:
    """Dropout that would make the cached call random in training: modules and attention rates."""
    found = []
    for module in modules:
        for name, sub in module.named_modules():
            if isinstance(sub, nn.modules.dropout._DropoutNd) and sub.p > 0:
                found.append(f"{name or type(sub).__name__} (p={sub.p})")
            for attr, value in vars(sub).items():
                if "dropout" in attr and isinstance(value, float) and value > 0:
                    found.append(f"{name}.{attr}={value}")
    return found


def _fingerprint(family: str, base, modules: list[nn.Module], names: list[str]) -> bytes:
    """What the cached call computes with, besides its inputs: the family, the config (the text config
    aside) and the attention implementation of the covered modules, and every covered weight and buffer."""
    config = {
        k: v
        for k, v in base.config.to_dict().items()
        if k not in _VOLATILE_CONFIG_KEYS and not k.startswith("_")
    }
    attention = [str(getattr(getattr(m, "config", None), "_attn_implementation", None)) for m in modules]
    digest = xxhash.xxh3_128()
    digest.update(json.dumps([family, config, attention], sort_keys=True, default=str).encode())
    tensors = dict(base.named_parameters())
    tensors.update(base.named_buffers())
    for name in sorted(names):
        tensor = tensors[name]
        digest.update(f"{name}{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.digest()


def check_vision_cache(spec, plan: TowerPlan) -> VisionCacheSettings:
    """The checks that need no model (run before loading it): the settings, a supported family, and
    every tower the cached call covers set to `frozen`."""
    settings = VisionCacheSettings.from_config(spec.vision_cache)
    if not settings.enabled:
        return settings
    family = FAMILIES.get(spec.family)
    if family is None:
        raise ValueError(
            f"model.vision_cache.enabled=true is not supported for model family {spec.family!r} "
            f"(supported: {sorted(FAMILIES)}); set model.vision_cache.enabled=false"
        )
    training = {t: plan.modes[t] for t in family.covers if plan.modes[t] != "frozen"}
    if training:
        needs = " and ".join(f"peft.towers.{t}=frozen" for t in family.covers)
        got = ", ".join(f"peft.towers.{t}={m}" for t, m in training.items())
        raise ValueError(
            f"model.vision_cache caches the output of {family.what} for {spec.family}, which is only valid "
            f"when it does not train: it needs {needs}, got {got}. Freeze those towers or set "
            "model.vision_cache.enabled=false"
        )
    return settings


def install_vision_cache(model, spec, plan: TowerPlan) -> VisionFeatureCache | None:
    """Put the cache on `model` (a PEFT model or a bare one) when `spec.vision_cache.enabled`, after
    checking that it is valid: a supported family, the covered towers frozen (in the plan and in fact),
    no dropout in them."""
    settings = check_vision_cache(spec, plan)
    if not settings.enabled:
        return None
    family = FAMILIES[spec.family]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    owner = family.owner(base)
    if type(owner).__name__ not in family.classes:
        raise ValueError(
            f"model.vision_cache for family {spec.family!r} expects {' or '.join(family.classes)}, "
            f"but {spec.pretrained} loaded {type(owner).__name__}"
        )
    covered = {n: p for n, p in base.named_parameters() if tower_of(n, spec.towers) in family.covers}
    trainable = [n for n, p in covered.items() if p.requires_grad]
    if trainable:
        raise ValueError(
            f"model.vision_cache: {len(trainable)} parameters of the cached {family.what} require grad "
            f"(e.g. {trainable[:3]}), although peft.towers sets "
            + ", ".join(f"{t}={plan.modes[t]}" for t in family.covers)
        )
    named_modules = dict(base.named_modules())
    modules = [named_modules[p] for t in family.covers for p in spec.towers[t] if p in named_modules]
    dropout = _dropout(modules)
    if dropout:
        raise ValueError(
            f"model.vision_cache: the cached {family.what} has dropout ({', '.join(dropout[:4])}), so its "
            "output in training is random and cannot be cached; set model.vision_cache.enabled=false"
        )
    buffers = [n for n, _ in base.named_buffers() if tower_of(n, spec.towers) in family.covers]
    store = (
        DiskStore(settings.directory, settings.max_bytes)
        if settings.directory
        else MemoryStore(settings.max_bytes)
    )
    fingerprint = _fingerprint(spec.family, base, modules, [*covered, *buffers])
    cache = VisionFeatureCache(spec.family, owner, store, fingerprint, list(covered.values()), base.config)
    log.info("model.vision_cache: caching %s per image, %s", family.what, cache.where)
    return cache.install()


def refuse_sharded_strategy(strategy) -> None:
    """Sharded parameters (FSDP, DeepSpeed ZeRO-3) are gathered by every rank in every forward of the
    vision tower: a rank that skips it on a cache hit would leave the others waiting."""
    name = type(strategy).__name__
    stage = (getattr(strategy, "config", None) or {}).get("zero_optimization", {}).get("stage")
    if "FSDP" in name or ("DeepSpeed" in name and stage == 3):
        raise ValueError(
            f"model.vision_cache cannot run under {name}{f' (ZeRO-{stage})' if stage else ''}: ranks would "
            "skip the sharded vision tower on different steps; use DDP or ZeRO-2, or disable the cache"
        )
