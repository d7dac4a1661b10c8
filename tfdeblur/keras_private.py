"""Every private Keras API tfdeblur uses, in one place.

Tested with Keras 3.15.1 (TensorFlow 2.21); setup.cfg declares the range
the suite has passed with. Each wrapper says why no public API serves, so a
Keras upgrade that breaks one is fixed here and nowhere else.
"""
from keras.src.losses import loss as _keras_loss

TESTED_WITH = "3.15.1"


def unscale_loss_for_distribution(loss):
    """The loss as the user sees it: Keras scales a replica's loss by
    1 / replicas for the all-reduce; `fit`'s loss tracker records it
    unscaled, and so must a `train_step` of ours that replaces fit's."""
    return _keras_loss.unscale_loss_for_distribution(loss)


def compute_loss(model, **kwargs):
    """`Model._compute_loss`: `compute_loss` plus the loss scaling a
    distribution strategy needs (public `compute_loss` does not scale)."""
    return model._compute_loss(**kwargs)


def loss_tracker(model):
    """The `Mean` behind the "loss" entry of `fit`'s logs (no public handle)."""
    return model._loss_tracker


def aggregate_additional_loss(model, loss):
    """`add_loss` and regularizer terms summed as `compute_loss` sums them
    (a loss of ours replaces `compute_loss` and must add them the same way)."""
    return model._aggregate_additional_loss(loss)


def symbolic_build(model, data_batch):
    """What `fit` does before its first step: builds the model, its metrics
    and compiled loss from a batch spec (a custom loop under a strategy
    must create those variables in the strategy's scope)."""
    return model._symbolic_build(data_batch=data_batch)


def all_sublayers(layer):
    """Every layer inside `layer`, nested models' and custom layers' own
    sublayers included (`Layer._flatten_layers`; the public `Model.layers`
    lists one level and no custom layer's attributes, e.g. OctaveConv's
    four convolutions)."""
    return list(layer._flatten_layers(include_self=False, recursive=True))
