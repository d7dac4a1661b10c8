"""Training: recipes -> compile arguments, and the training run behind `cli.py train`."""
from tfdeblur.training.recipes import compile_args, make_loss, make_optimizer, make_schedule
