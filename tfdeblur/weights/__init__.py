"""Trained weights shipped inside the package, loadable offline (keras-hub's presets).

    import tfdeblur.models
    tfdeblur.models.available_weights()                      # ['mtwdn-photos', ...]
    model = tfdeblur.models.from_preset("mtwdn-photos")      # network + weights
    model = tfdeblur.models.build("mtwdn", weights="mtwdn-photos")

**Names.** A shipped weights name is `<network preset>-<training data>[-<variant>]`,
lower case, e.g. `mtwdn-photos` (MTWDN trained on the `photos:` stream) or
`lmfn-photos-small`. The hyphen separates it from the network presets,
whose names use underscores (`mtwdn_oneway`), so one `--model` argument can
take either a weights name or a `.keras` path without ambiguity.

**Files.** Each shipped model is two files in the weights folder (this
package folder, or `$TFDEBLUR_WEIGHTS_DIR` when set, which replaces it):

- `NAME.json`, the manifest: the network preset, its constructor config,
  every weight's name (Keras' `variable.path`, e.g. `net_enc1_conv/kernel`),
  shape and stored dtype, the sha256 of the weights file, the training
  summary (free-form, filled by whoever trained it) and the fp32-vs-packed
  precision check made when packing;
- `NAME.weights.npz`: the weights only (no optimizer state), one array per
  weight name, floats as fp16 (default) or bf16 (stored as the upper 16
  bits of float32, in uint16 arrays, as numpy has no bfloat16) or fp32.

Loading verifies the checksum and that the network built from the manifest
has exactly the stored weight names and shapes; any damage or mismatch is a
one-line `ValueError` naming the file or the weight (a renamed layer in a
later version of the code shows up as a missing weight, not a traceback).

This module needs only numpy: the network classes live in `tfdeblur.models`,
which builds the network and calls `assign` (import graph: weights <-
models <- pack/cli). Packing: `python -m tfdeblur.weights pack ...`
(`tfdeblur/weights/pack.py`).
"""
import dataclasses
import difflib
import hashlib
import json
import os
import re

import numpy as np

# The model `deblur` uses when no --model is given: the best shipped one.
# Change it here only (cli, tfdeblur.deblur and Deblurrer read it).
DEFAULT_WEIGHTS = "mtwdn-photos"

ENV_DIR = "TFDEBLUR_WEIGHTS_DIR"
FORMAT = "tfdeblur-weights"
FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".json"
WEIGHTS_SUFFIX = ".weights.npz"
DTYPES = ("fp16", "bf16", "fp32")
NAME_PATTERN = re.compile(r"^[a-z0-9_]+(-[a-z0-9_]+)+$")


def weights_dir():
    """The folder holding shipped weights: `$TFDEBLUR_WEIGHTS_DIR` or this package folder."""
    return os.environ.get(ENV_DIR) or os.path.dirname(os.path.abspath(__file__))


def check_name(name):
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"weights name must be '<network preset>-<data>[-<variant>]' in lower case "
            f"(letters, digits, '_'), e.g. 'mtwdn-photos'; got {name!r}"
        )
    return name


def available(directory=None):
    """Names of the weights in `directory` (default `weights_dir()`), sorted."""
    directory = directory or weights_dir()
    if not os.path.isdir(directory):
        return []
    return sorted(
        f[: -len(MANIFEST_SUFFIX)]
        for f in os.listdir(directory)
        if f.endswith(MANIFEST_SUFFIX) and not f.startswith(".") and NAME_PATTERN.match(f[: -len(MANIFEST_SUFFIX)])
    )


def looks_like_name(text):
    """True for something shaped like a weights name (not a path)."""
    return isinstance(text, str) and bool(NAME_PATTERN.match(text))


def unknown_name_error(name, arg="weights", what="is not a shipped weights name"):
    """The one-line error for a name that is not shipped, listing the known ones."""
    known = available()
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(known) if known else f"none are installed yet (folder {weights_dir()})"
    return ValueError(f"{arg} {name}: {what}{hint}; shipped weights: {listing}")


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A parsed `NAME.json` (see the module docstring)."""

    name: str
    path: str  # the manifest file
    data: dict

    @property
    def preset(self):
        return self.data["preset"]

    @property
    def config(self):
        return dict(self.data["config"])

    @property
    def dtype(self):
        return self.data["dtype"]

    @property
    def weights_path(self):
        return os.path.join(os.path.dirname(self.path), self.data["file"])

    @property
    def summary(self):
        return dict(self.data.get("summary") or {})

    def describe(self):
        """One line: network, size, precision, and the training summary's
        headline fields when the trainer gave them (`tfdeblur list`)."""
        data = self.data
        parts = [f"{self.preset}, {data.get('params', 0):,} params, {self.dtype}, {data.get('bytes', 0) / 1e6:.1f} MB"]
        summary = self.summary
        for key in ("data", "steps", "hardware", "wall_time"):
            if key in summary:
                parts.append(f"{key.replace('_', ' ')} {summary[key]}")
        metrics = summary.get("metrics")
        if isinstance(metrics, dict):
            parts += [f"{k} {v}" for k, v in list(metrics.items())[:4]]
        return "; ".join(str(p) for p in parts)


_REQUIRED = {"format": str, "format_version": int, "name": str, "preset": str, "config": dict,
             "dtype": str, "file": str, "sha256": str, "weights": list}


def read_manifest(name_or_path):
    """The manifest of a shipped name, or of a `NAME.json` path."""
    text = os.fspath(name_or_path)
    if text.endswith(MANIFEST_SUFFIX):
        path, name = text, os.path.basename(text)[: -len(MANIFEST_SUFFIX)]
        if not os.path.isfile(path):
            raise ValueError(f"weights manifest {path}: no such file")
    else:
        name = text
        if not looks_like_name(name):
            raise unknown_name_error(name)
        path = os.path.join(weights_dir(), name + MANIFEST_SUFFIX)
        if not os.path.isfile(path):
            raise unknown_name_error(name)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"weights manifest {path} is damaged ({type(e).__name__}); reinstall tfdeblur") from None
    bad = [k for k, kind in _REQUIRED.items() if not isinstance(data.get(k) if isinstance(data, dict) else None, kind)]
    if bad:
        raise ValueError(f"weights manifest {path} is damaged (missing or wrong {', '.join(bad)}); reinstall tfdeblur")
    if data["format"] != FORMAT or data["format_version"] > FORMAT_VERSION:
        raise ValueError(f"weights manifest {path}: format {data['format']!r} version {data['format_version']} "
                         f"needs a newer tfdeblur (this one reads {FORMAT!r} up to version {FORMAT_VERSION})")
    if data["dtype"] not in DTYPES:
        raise ValueError(f"weights manifest {path} is damaged (dtype {data['dtype']!r}); reinstall tfdeblur")
    if os.path.basename(data["file"]) != data["file"]:
        raise ValueError(f"weights manifest {path} is damaged (file {data['file']!r} must be a name in its folder)")
    return Manifest(name, path, data)


def sha256_of(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------- precision


def encode(array, dtype):
    """A float32 array as stored: float16, bf16 bits (uint16) or float32.
    Non-float weights (none in our networks so far) are stored as they are."""
    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.floating):
        return a
    a = a.astype(np.float32)
    if dtype == "fp32":
        return a
    if dtype == "fp16":
        big = np.abs(a) > np.finfo(np.float16).max
        if big.any():
            raise ValueError(f"a weight of magnitude {np.abs(a).max():.3g} overflows fp16; use `dtype` bf16 or fp32")
        return a.astype(np.float16)
    if dtype == "bf16":
        # (np.ascontiguousarray would turn a scalar weight into shape (1,).)
        bits = np.array(a, order="C").view(np.uint32).astype(np.uint64)
        # Round to nearest, ties to even, on the 16 bits dropped.
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)
        return (rounded >> 16).astype(np.uint16).reshape(a.shape)
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")


def decode(array, dtype):
    """A stored array back as float32 (see `encode`)."""
    a = np.asarray(array)
    if dtype == "bf16" and a.dtype == np.uint16:
        return (a.astype(np.uint32) << 16).view(np.float32).reshape(a.shape)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    return a


# ------------------------------------------------------------ read / write


def read_arrays(manifest):
    """The stored arrays of `manifest` as float32, checked: file present,
    checksum, and the names and shapes the manifest lists."""
    path = manifest.weights_path
    if not os.path.isfile(path):
        raise ValueError(f"weights file {path} is missing; reinstall tfdeblur")
    if sha256_of(path) != manifest.data["sha256"]:
        raise ValueError(f"weights file {path} is damaged (checksum mismatch); reinstall tfdeblur")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # zip/format errors come in many types; the checksum passed, so the packer wrote junk
        raise ValueError(f"weights file {path} is damaged ({type(e).__name__}); reinstall tfdeblur") from None
    try:
        listed = {w["name"]: tuple(w["shape"]) for w in manifest.data["weights"]}
    except (KeyError, TypeError):
        raise ValueError(f"weights manifest {manifest.path} is damaged (its weight list); reinstall tfdeblur") from None
    if set(listed) != set(arrays):
        odd = sorted(set(listed) ^ set(arrays))
        raise ValueError(f"weights file {path} does not match its manifest (weights {', '.join(odd[:3])}); reinstall tfdeblur")
    for key, shape in listed.items():
        if tuple(arrays[key].shape) != shape:
            raise ValueError(f"weights file {path} does not match its manifest ({key}: {arrays[key].shape} vs {shape})")
    return {k: decode(v, manifest.dtype) for k, v in arrays.items()}


def assign(model, manifest, arrays):
    """Sets every weight of `model` (a built Keras model) from `arrays` by
    name. The network must have exactly the stored names and shapes."""
    variables = {v.path: v for v in model.weights}
    for path, v in variables.items():
        if path not in arrays:
            raise ValueError(
                f"weights {manifest.name}: the network {manifest.preset!r} has a weight {path!r} that "
                f"{manifest.weights_path} does not hold (its layers were renamed or changed since the weights "
                f"were packed; use the tfdeblur version that packed them)"
            )
        if tuple(v.shape) != tuple(arrays[path].shape):
            raise ValueError(
                f"weights {manifest.name}: weight {path!r} has shape {tuple(arrays[path].shape)} in "
                f"{manifest.weights_path}, the network {manifest.preset!r} built from its config needs {tuple(v.shape)}"
            )
    unused = sorted(set(arrays) - set(variables))
    if unused:
        raise ValueError(
            f"weights {manifest.name}: {manifest.weights_path} holds {len(unused)} weight(s) the network "
            f"{manifest.preset!r} lacks, e.g. {unused[0]!r} (its layers were renamed or removed since the weights were packed)"
        )
    for path, v in variables.items():
        v.assign(arrays[path])
    return model
