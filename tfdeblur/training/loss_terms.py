"""The separate terms of a multi-term loss over a training run, as data and as
a picture.

A tfdeblur loss with `term_names` (e.g. MSFS-Net's `MSFSLoss`: content,
high, low, eqs. 5-7) is tracked term by term by `DeblurModel` ("loss_<term>"
in the fit logs, so also in TensorBoard and the printed epoch lines). This
callback also keeps every step's value and writes, into the run folder and
after every epoch (atomically):

- `loss_terms.json`: {"step": [...], "<term>": [...]} per step, and the
  epoch means; a resumed run appends to it;
- `loss_terms.png`: one panel per term, per-step values (thin) and epoch
  means (thick), each panel on its own scale.

Keras logs running means within an epoch; each step's own value is
recovered exactly from them (k * mean_k - (k - 1) * mean_{k-1}: batches of
equal size).
"""
import json
import os

import cv2
import keras
import numpy as np

from tfdeblur import io as tio

PANEL = (220, 720)  # height, width of one term's panel
MARGIN = (28, 70, 24, 16)  # top, left, bottom, right
COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def term_names(model):
    return tuple(getattr(model.loss, "term_names", ()) or ())


def _panel(title, steps, values, epoch_steps, epoch_values, color):
    h, w = PANEL
    top, left, bottom, right = MARGIN
    img = np.full((h, w, 3), 255, np.uint8)
    x0, x1, y0, y1 = left, w - right, top, h - bottom
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    cv2.putText(img, title, (x0, top - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    finite = [v for v in list(values) + list(epoch_values) if np.isfinite(v)]
    if not finite or not steps:
        return img
    lo, hi = min(finite), max(finite)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * abs(lo or 1.0), hi + 0.5 * abs(hi or 1.0)
    s_max = max(max(steps), 1)

    def pts(xs, ys):
        out = [(x0 + (x1 - x0) * s / s_max, y1 - (y1 - y0) * (v - lo) / (hi - lo)) for s, v in zip(xs, ys) if np.isfinite(v)]
        return np.round(np.array(out, np.float64)).astype(np.int32).reshape(-1, 1, 2)

    faint = tuple(int(255 - (255 - c) * 0.35) for c in color)
    if len(steps) > 1:
        cv2.polylines(img, [pts(steps, values)], False, faint, 1, cv2.LINE_AA)
    if epoch_steps:
        p = pts(epoch_steps, epoch_values)
        cv2.polylines(img, [p], False, color, 2, cv2.LINE_AA)
        for q in p[:, 0]:
            cv2.circle(img, (int(q[0]), int(q[1])), 3, color, -1, cv2.LINE_AA)
    for value, y in ((hi, y0), (lo, y1)):
        cv2.putText(img, f"{value:.4g}", (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for s, x in ((0, x0), (s_max, x1)):
        label = f"step {s}"
        cv2.putText(img, label, (max(0, min(x - 20, w - 80)), h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def plot_terms(record, path, titles=None):
    """Writes the per-term panels of `record` (see the module docstring) to `path`."""
    names = [k for k in record if k not in ("step", "epoch_step") and not k.startswith("epoch_")]
    panels = []
    for i, name in enumerate(names):
        title = (titles or {}).get(name, name)
        panels.append(
            _panel(title, record["step"], record[name], record.get("epoch_step", []),
                   record.get(f"epoch_{name}", []), COLORS[i % len(COLORS)])
        )
    tio.write_image(path, np.concatenate(panels, axis=0))


class LossTermsRecorder(keras.callbacks.Callback):
    """Records each step's loss terms; writes loss_terms.json/.png each epoch."""

    def __init__(self, out_dir, names, steps_per_epoch, titles=None):
        super().__init__()
        self.json_path = os.path.join(out_dir, "loss_terms.json")
        self.png_path = os.path.join(out_dir, "loss_terms.png")
        self.names = tuple(names)
        self.steps_per_epoch = int(steps_per_epoch)
        self.titles = titles
        self.record = {"step": [], **{n: [] for n in self.names}, "epoch_step": [], **{f"epoch_{n}": [] for n in self.names}}
        if os.path.exists(self.json_path):  # a resumed run continues the record
            with open(self.json_path) as f:
                previous = json.load(f)
            if set(previous) == set(self.record):
                self.record = previous

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.previous = {n: 0.0 for n in self.names}
        # a resumed epoch restarts: drop what an interrupted run recorded of it
        first = epoch * self.steps_per_epoch
        keep = [i for i, s in enumerate(self.record["step"]) if s <= first]
        for key in ("step",) + self.names:
            self.record[key] = [self.record[key][i] for i in keep]
        keep = [i for i, s in enumerate(self.record["epoch_step"]) if s <= first]
        for key in ("epoch_step",) + tuple(f"epoch_{n}" for n in self.names):
            self.record[key] = [self.record[key][i] for i in keep]

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        k = batch + 1
        self.record["step"].append(self.epoch * self.steps_per_epoch + k)
        for n in self.names:
            mean = float(logs.get(f"loss_{n}", np.nan))
            self.record[n].append(k * mean - (k - 1) * self.previous[n])
            self.previous[n] = mean

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.record["epoch_step"].append((epoch + 1) * self.steps_per_epoch)
        for n in self.names:
            self.record[f"epoch_{n}"].append(float(logs.get(f"loss_{n}", np.nan)))
        tio.atomic_write(self.json_path, json.dumps(self.record))
        plot_terms(self.record, self.png_path, self.titles)


def recorder_for(model, out_dir, steps_per_epoch):
    """A `LossTermsRecorder` for a model compiled with a multi-term loss, else None."""
    names = term_names(model)
    if not names:
        return None
    titles = getattr(model.loss, "term_titles", None)
    return LossTermsRecorder(out_dir, names, steps_per_epoch, titles)
