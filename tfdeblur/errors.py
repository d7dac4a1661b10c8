"""One line out of a TensorFlow runtime error, for `error: ...` messages;
argument names in library errors (`arg`), which the command line shows as
its flags (`flags`, `flags_for`).

TensorFlow's messages carry graph plumbing around the part a user needs:
`{{function_node __wrapped__SaveV2_...}} /run/checkpoints/ckpt-1_temp/part-...;
No space left on device [Op:SaveV2]`. Imports nothing heavy: callers pass
the exception.
"""
import re

_PLUMBING = re.compile(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\].*$|\s*name:\s*$")
# Reasons meaning the disk (or a file-size limit) is full, as the OS words them.
DISK_FULL = ("No space left on device", "File too large", "Disk quota exceeded")
# An argument's name as `arg` writes it: a Python identifier in backticks.
_ARG = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")
# The exit status of a command refused for its input, as argparse's own.
EXIT_USAGE = 2


def arg(name):
    """A Python argument's name as library errors write it, `crop`: a library
    caller reads the argument it passed (`TrainConfig(crop=...)`), and the
    command line rewrites it to the option's flag, --crop (`flags_for`)."""
    return f"`{name}`"


def flags(parser, command=None):
    """argparse dest -> how the command line names it: the long option string
    of an option (`batch_size` -> --batch-size, `init_from` -> --from), the
    metavar (else the dest) of a positional (prepare's `data` -> SPEC); with
    `command`, the options of that subcommand and the parser's own. Read
    from the parser's actions, so a new option maps without a table."""
    import argparse

    actions = list(parser._actions)
    if command is not None:
        commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        actions += commands[command]._actions
    names = {}
    for action in actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            names[action.dest] = max(action.option_strings, key=lambda o: (o.startswith("--"), len(o)))
        else:
            names[action.dest] = action.metavar if isinstance(action.metavar, str) else action.dest
    return names


def flags_for(message, names):
    """`message` with each argument name written by `arg` whose name is a key
    of `names` (argparse dest -> flag, `flags`) replaced by its flag; other
    text, and names `names` does not hold, stay as they are."""
    return _ARG.sub(lambda m: names.get(m.group(1), m.group(0)), message)


def print_error(message, names):
    """Prints `error: <message>` on stderr, its argument names as the flags
    in `names` (`flags`, `flags_for`): how every command line of the package
    (`tfdeblur`, `python -m tfdeblur.weights`, ...) reports bad input.
    Returns `EXIT_USAGE`, for `return print_error(...)`."""
    import sys

    print(f"error: {flags_for(message, names)}", file=sys.stderr)
    return EXIT_USAGE


def first_line(e):
    """The first line of an exception's message; its class name when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def tf_error_reason(e):
    """The first line of a `tf.errors.OpError`'s message, without the graph
    plumbing; the class name when nothing is left."""
    text = getattr(e, "message", None) or str(e)
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = _PLUMBING.sub("", line).strip()
    return line or type(e).__name__


def disk_full(e):
    """True when an OSError or TensorFlow error says the disk is full."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    return any(reason in str(e) for reason in DISK_FULL)
