"""Per-family adapters: how each family's image call is cut into images and put back together.

A model config names its adapter by `_target_` (`model.vision_cache.adapter` in conf/model/<name>.yaml,
instantiated with the model spec); a family without one has no vision cache."""

from __future__ import annotations

import torch
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling


class FamilyAdapter:
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


class QwenAdapter(FamilyAdapter):
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


class LlavaAdapter(FamilyAdapter):
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


class PaliGemmaAdapter(FamilyAdapter):
    classes = ("PaliGemmaModel",)

    def compute(self, call, items, settings):
        return list(call(pixel_values=torch.cat([p for (p,) in items]), return_dict=True).pooler_output)

    def join(self, features, args):
        return BaseModelOutputWithPooling(pooler_output=torch.stack(features))


class Idefics3Adapter(FamilyAdapter):
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


class MllamaAdapter(FamilyAdapter):
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


class IdeficsAdapter(FamilyAdapter):
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
