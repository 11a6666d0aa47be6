"""The cache itself: the per-image cached call, its statistics, and the model fingerprint in its keys."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

import torch
import xxhash
from torch import nn

from mmlearn.compat.transformers import attn_implementation
from mmlearn.models.vision_cache.families import FamilyAdapter
from mmlearn.models.vision_cache.stores import DiskStore

_VOLATILE_CONFIG_KEYS = {
    "text_config",
    "transformers_version",
    "use_cache",
    "architectures",
    "dtype",
    "torch_dtype",
}


# torch's dropout modules (the public subclasses of its private `_DropoutNd`)
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


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

    def __init__(
        self,
        family: str,
        adapter: FamilyAdapter,
        owner,
        store,
        fingerprint: bytes,
        guarded: list[nn.Parameter],
        config,
    ):
        self.family_name = family
        self.family = adapter
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


def _dropout(modules: list[nn.Module]) -> list[str]:
    """Dropout that would make the cached call random in training: modules and attention rates."""
    found = []
    for module in modules:
        for name, sub in module.named_modules():
            if isinstance(sub, DROPOUT) and sub.p > 0:
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
    attention = [str(attn_implementation(getattr(m, "config", None))) for m in modules]
    digest = xxhash.xxh3_128()
    digest.update(json.dumps([family, config, attention], sort_keys=True, default=str).encode())
    tensors = dict(base.named_parameters())
    tensors.update(base.named_buffers())
    for name in sorted(names):
        tensor = tensors[name]
        digest.update(f"{name}{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.digest()
