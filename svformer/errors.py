"""One exception type for mistakes a user can fix.

The CLI prints `UserError` as a single line and exits 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A bad input (file, flag, config, checkpoint) described in one line that says what to do."""


def load_error_detail(err: Exception) -> str:
    """The line of a `load_state_dict` RuntimeError that names the first problem (its second line,
    e.g. "size mismatch for head.weight: ..."), for one-line UserErrors."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    return lines[1].strip() if len(lines) > 1 else lines[0]
