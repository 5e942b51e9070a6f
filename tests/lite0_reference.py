"""A float64 numpy re-implementation of EfficientNet-Lite0, written independently of Keras.

It reads the source tensors in PyTorch's own layouts (OIHW kernels) and pads the way TensorFlow's
"same" does, so agreement with the Keras model checks the layout conversion and the padding.
"""

from __future__ import annotations

import numpy as np

from realness_tasks.lite0 import BN_EPSILON, IMAGENET_MEAN, IMAGENET_STD, block_specs


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding: output ceil(size / stride); the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """[n, h, w, c] -> [n, out_h, out_w, kernel, kernel, c] patches after SAME padding."""
    pad_h, pad_w = same_padding(x.shape[1], kernel, stride), same_padding(x.shape[2], kernel, stride)
    x = np.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    n, h, w, c = x.shape
    out_h, out_w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    s = x.strides
    return np.lib.stride_tricks.as_strided(x, (n, out_h, out_w, kernel, kernel, c),
                                           (s[0], s[1] * stride, s[2] * stride, s[1], s[2], s[3]))


def conv(x: np.ndarray, weight_oihw: np.ndarray, stride: int) -> np.ndarray:
    k = weight_oihw.shape[-1]
    return np.einsum("nhwijc,ocij->nhwo", windows(x, k, stride), weight_oihw.astype(np.float64), optimize=True)


def depthwise(x: np.ndarray, weight_c1hw: np.ndarray, stride: int) -> np.ndarray:
    k = weight_c1hw.shape[-1]
    return np.einsum("nhwijc,cij->nhwc", windows(x, k, stride), weight_c1hw[:, 0].astype(np.float64), optimize=True)


def batchnorm(x: np.ndarray, t: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    scale = t[f"{prefix}.weight"] / np.sqrt(t[f"{prefix}.running_var"].astype(np.float64) + BN_EPSILON)
    return (x - t[f"{prefix}.running_mean"]) * scale + t[f"{prefix}.bias"]


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def lite0_logits(images_0_255: np.ndarray, t: dict[str, np.ndarray]) -> np.ndarray:
    """ImageNet logits [n, 1000] for RGB images in 0..255, [n, h, w, 3]."""
    x = (np.asarray(images_0_255, np.float64) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    x = relu6(batchnorm(conv(x, t["_conv_stem.weight"], 2), t, "_bn0"))
    for spec in block_specs():
        p = f"_blocks.{spec.index}"
        y = x
        if spec.expand != 1:
            y = relu6(batchnorm(conv(y, t[f"{p}._expand_conv.weight"], 1), t, f"{p}._bn0"))
        y = relu6(batchnorm(depthwise(y, t[f"{p}._depthwise_conv.weight"], spec.stride), t, f"{p}._bn1"))
        y = batchnorm(conv(y, t[f"{p}._project_conv.weight"], 1), t, f"{p}._bn2")
        x = x + y if spec.residual else y
    x = relu6(batchnorm(conv(x, t["_conv_head.weight"], 1), t, "_bn1"))
    return x.mean(axis=(1, 2)) @ t["_fc.weight"].T.astype(np.float64) + t["_fc.bias"]
