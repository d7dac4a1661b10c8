"""One decorator that registers a public object with Keras' serialization.

Everything registered here loads from a `.keras` file without
`custom_objects` and under `safe_mode=True`, after a bare `import tfdeblur`
(see `tfdeblur.lazy_registry`, which lists every public name).
"""
import keras

from tfdeblur.lazy_registry import PACKAGE, PUBLIC


def public(cls):
    """Registers `cls` as `tfdeblur>ClassName` and returns it unchanged."""
    registered_name = f"{PACKAGE}>{cls.__name__}"
    if PUBLIC.get(registered_name) != cls.__module__:
        # Loud at import: a class missing from the list would load only when
        # its module happens to be imported already.
        raise ValueError(
            f"{registered_name} must be listed in tfdeblur/lazy_registry.py PUBLIC as "
            f"{cls.__module__!r}; got {PUBLIC.get(registered_name)!r}"
        )
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
