"""Load any Keras model into the working representation, and save working models safely.

Accepted: ``.h5`` (Keras 2 / tf.keras / old standalone Keras, and Keras 3), ``.keras`` (Keras 3 and
tf_keras), a SavedModel folder, and a live Keras 3 or tf_keras model. Keras files go through a JSON
scan for code and unknown classes first (see :mod:`edgecnn.io.safety`). The result is a flat
``tf_keras`` functional model, checked numerically against the model as its own Keras loaded it.

A SavedModel without Keras metadata (e.g. Keras 3 ``model.export()``) has no layers to rewrite: it
loads as a :class:`~edgecnn.io.savedmodel.GraphModel`, which ``inspect`` (and later export and bench)
accept and which surgery stages refuse with :class:`UnsupportedModelError`.

Example:
    >>> import keras
    >>> m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])
    >>> working = load(m)
    >>> type(working).__module__.split(".")[0], load_info(working).written_by
    ('tf_keras', 'keras 3 (live)')
"""
from edgecnn.errors import UnsupportedModelError
from edgecnn.io.load import LoadInfo, load, load_info
from edgecnn.io.save import save

__all__ = ["LoadInfo", "load", "load_info", "save", "UnsupportedModelError"]
