"""A TFLite converter for a tf_keras model that costs one trace, not one per layer.

``tf.lite.TFLiteConverter.from_keras_model`` saves the Keras model as a SavedModel first, and saving a Keras
model traces every layer's call function for Keras' own serialization, then loads it all back: measured on
a ResNet50 at 224 px (2 cores, busy), 27.6 s for an fp32 conversion. The converter only needs the inference
function. :func:`keras_converter` saves just that (a ``tf.Module`` holding the model's variables, one
``serving_default`` signature named like Keras' own: the input layer's name in, the output layers' names out)
and converts from it: 7.1-10.5 s for the same model, the same flatbuffer (same ops, tensor names, signature
and buffers; only the conversion metadata says "saved model" instead of "Keras model").

A model it cannot save that way (several inputs, a resource its variables do not cover, a Keras 3 model) gets
``from_keras_model`` as before.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 1), name="image")
    >>> m = tf_keras.Model(inp, tf_keras.layers.Dense(2, name="scores")(tf_keras.layers.Flatten()(inp)))
    >>> with keras_converter(m) as converter:
    ...     data = converter.convert()
    >>> from ai_edge_litert.interpreter import Interpreter
    >>> Interpreter(model_content=data).get_signature_list()
    {'serving_default': {'inputs': ['image'], 'outputs': ['scores']}}
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from typing import Any, Iterator

__all__ = ["keras_converter"]


def _savable(model: Any) -> bool:
    return type(model).__module__.startswith("tf_keras.") and len(model.inputs) == 1 and \
        len(getattr(model, "output_names", None) or []) == len(model.outputs)


@contextlib.contextmanager
def keras_converter(model: Any) -> Iterator[Any]:
    """A ``TFLiteConverter`` for ``model``, valid inside the ``with`` block (its SavedModel is removed after)."""
    import tensorflow as tf

    folder = None
    converter = None
    if _savable(model):
        folder = tempfile.mkdtemp(prefix="edgecnn-convert-")
        inp = model.inputs[0]
        spec = tf.TensorSpec([None, *inp.shape[1:]], inp.dtype, name=model.input_names[0])
        names = list(model.output_names)

        def serve(x: Any) -> dict:
            out = model(x, training=False)
            out = out if isinstance(out, (list, tuple)) else [out]
            return dict(zip(names, out))

        holder = tf.Module()
        holder.variables_ = list(model.weights)  # tracked, so that the signature's captures are saved
        try:
            tf.saved_model.save(holder, folder, signatures=tf.function(serve, input_signature=[spec]))
            converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        except Exception:  # noqa: BLE001 - a model this cannot save is converted the Keras way
            shutil.rmtree(folder, ignore_errors=True)
            folder, converter = None, None
    try:
        yield converter if converter is not None else tf.lite.TFLiteConverter.from_keras_model(model)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
