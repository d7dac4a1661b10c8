"""One decorator that registers a public object with Keras' serialization.

Everything registered here loads from a `.keras` file without
`custom_objects` and under `safe_mode=True`.
"""
import keras

PACKAGE = "tfdeblur"


def public(cls):
    """Registers `cls` as `tfdeblur>ClassName` and returns it unchanged."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
