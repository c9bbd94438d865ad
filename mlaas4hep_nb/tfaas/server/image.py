"""Image classification, as upstream's ``/image`` (``/predict/image``) does it.

The form holds the part ``image`` (a PNG, JPEG, GIF or BMP file) and the field
``model``. The image is decoded by TensorFlow's own decoders into
``img_channels`` channels (from ``params.json``), cast to float32 with its
pixel values as they are (0-255: upstream does not normalise, so a model
that expects [0, 1] must rescale itself) and given a batch axis:
``[1, height, width, channels]``. Upstream answers a SavedModel with its
list of outputs and a TF1 frozen graph with ``{"filename", "labels":
[{"label", "probability"}, ...]}``, the five most probable labels first;
so does this server.

Beyond upstream: an image whose size differs from a model's fixed input size
is resized (bilinear) to it, and a model taking flat ``[None, n]`` rows gets
the image flattened when it has ``n`` values.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...bundle import PARAMS_FILE
from ..errors import RequestError
from .model import ServedModel

__all__ = ["MAX_PIXELS", "classify", "image_tensor", "read_image_form"]

MAX_PIXELS = 1 << 25  # 33 million: a [1, h, w, 4] float32 tensor of at most 512 MiB
TOP_LABELS = 5


def __dir__() -> list[str]:
    return __all__


def _dimensions(data: bytes) -> tuple[str, int, int]:
    """The format, height and width from the file's header, before decoding anything."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return "png", int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif", int.from_bytes(data[8:10], "little"), int.from_bytes(data[6:8], "little")
    if data[:2] == b"BM" and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return "bmp", abs(height), abs(width)
    if data[:3] == b"\xff\xd8\xff":
        import tensorflow as tf

        try:
            height, width, _ = tf.io.extract_jpeg_shape(data).numpy().tolist()
        except (tf.errors.InvalidArgumentError, ValueError):
            raise RequestError(400, "the image is a corrupt JPEG file") from None
        return "jpeg", height, width
    raise RequestError(400, "the image must be a PNG, JPEG, GIF or BMP file")


def image_tensor(
    data: bytes, channels: int, size: tuple[int | None, int | None] = (None, None)
) -> np.ndarray:
    """The float32 ``[1, height, width, channels]`` tensor of an image file, as upstream makes it.

    ``size``: the model's fixed height and width, if any; an image of another
    size is resized to it.
    """
    import tensorflow as tf

    kind, height, width = _dimensions(data)
    if not 0 < height * width <= MAX_PIXELS:
        raise RequestError(
            400, f"the image is {width}x{height} pixels; at most {MAX_PIXELS} pixels are served"
        )
    decode = {"png": tf.io.decode_png, "jpeg": tf.io.decode_jpeg}.get(kind)
    try:
        if decode is not None:
            image = decode(data, channels=channels)
        else:
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    except (tf.errors.InvalidArgumentError, ValueError) as err:
        message = str(err).strip().splitlines()[0][:200]
        raise RequestError(400, f"the {kind.upper()} image cannot be decoded: {message}") from None
    image = tf.cast(image, tf.float32)
    if all(size) and tuple(image.shape[:2]) != tuple(size):
        image = tf.image.resize(image, size)
    return image.numpy()[None]


def _channels(model: ServedModel) -> int:
    value = model.params.get("img_channels", model.params.get("imgChannels"))
    if type(value) is int and value in (1, 3, 4):
        return value
    if model.image_shape is not None and model.image_shape[-1] in (1, 3, 4):
        return model.image_shape[-1]
    raise RequestError(
        400,
        f"model {model.name!r} is not an image model: its {PARAMS_FILE} gives no img_channels "
        "(1 grey, 3 colour, 4 with alpha) and its input is not [None, height, width, channels]",
    )


def classify(model: ServedModel, data: bytes, filename: str) -> np.ndarray | dict:
    """Upstream's answer for the image file ``data`` sent to ``model`` (blocking: TF runs here)."""
    channels = _channels(model)
    if model.image_shape is not None:
        if model.image_shape[-1] not in (None, channels):
            raise RequestError(
                400,
                f"model {model.name!r} takes images of {model.image_shape[-1]} channels, "
                f"but its {PARAMS_FILE} says img_channels {channels}",
            )
        x = image_tensor(data, channels, model.image_shape[:2])
    else:
        x = image_tensor(data, channels)
        if model.n_features not in (None, x.size):
            raise RequestError(
                400,
                f"model {model.name!r} takes {model.n_features} values per row; the image "
                f"has {x.shape[1]}x{x.shape[2]}x{channels} = {x.size}",
            )
        x = x.reshape(1, -1)
    probabilities = model.predict(x)[0]
    if model.frozen_graph is None:
        return probabilities
    pairs = zip(model.labels, probabilities, strict=False)
    ranked = sorted(pairs, key=lambda pair: -pair[1])[:TOP_LABELS]
    labels = [{"label": label, "probability": p} for label, p in ranked]
    return {"filename": filename, "labels": labels}


async def read_image_form(form: Mapping) -> tuple[str | None, bytes, str]:
    """The model named (None: the default one), the image's bytes and its file name."""
    model = form.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, 'the form field "model" must be a model name, not a file')
    part = form.get("image")
    read = getattr(part, "read", None)
    if read is None:
        raise RequestError(400, 'send the image as the file part "image" of a multipart form')
    return model or None, await read(), getattr(part, "filename", None) or ""
