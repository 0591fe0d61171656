"""One exception type for mistakes a user can fix.

The CLI prints `UserError` as a single line and exits 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A bad input (file, flag, config, checkpoint) described in one line that says what to do."""
