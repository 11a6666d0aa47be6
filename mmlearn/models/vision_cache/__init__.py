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

from mmlearn.models.vision_cache.families import FamilyAdapter
from mmlearn.models.vision_cache.install import install_vision_cache, refuse_sharded_strategy
from mmlearn.models.vision_cache.settings import check_vision_cache

__all__ = ["FamilyAdapter", "check_vision_cache", "install_vision_cache", "refuse_sharded_strategy"]
