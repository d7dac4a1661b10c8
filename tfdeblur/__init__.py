"""tfdeblur: single-image motion deblurring networks for TensorFlow 2 / Keras 3."""
__version__ = "0.1.0"

from tfdeblur import lazy_registry as _lazy_registry

# Every public class becomes loadable by keras.saving.load_model, lazily.
_lazy_registry.install()


def deblur(image, model=None, **options):
    """Restores an image array or file with a tfdeblur model, a `.keras`
    path, a SavedModel folder or `.tflite` file from `export`, or a shipped weights name (None: the default shipped weights,
    `tfdeblur.weights.DEFAULT_WEIGHTS`); returns a numpy array of the
    input's dtype and shape. Options: tile, overlap, max_pixels, ensemble, transform, scales (default "auto":
    images of 600 px and more on the shorter side are also restored at half size, from 1200 px at a quarter size too,
    weighted by sharpness: scale_fusion), precision (default "auto": bf16 where this machine runs it faster, else fp32),
    kernel_refine (default "auto": for images of at least 122 px a side, one blur kernel is estimated from the
    network's output and the photo is deconvolved with it, guarded: the network's output is kept for noisy photos,
    where one kernel does not explain the blur everywhere (moving objects) and where the refinement would undo it;
    True: always (an error for smaller images), False: never; `tfdeblur.kernel_refine`); see `tfdeblur.inference`."""
    # Imported here so that `import tfdeblur` stays free of TensorFlow.
    from tfdeblur.inference import deblur as _deblur

    return _deblur(image, model, **options)
