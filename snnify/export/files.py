"""Writing a file whole or not at all (see :func:`snnify.validation.write_atomically`).

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> write_atomically(path, lambda p: open(p, "w").close())
    >>> os.listdir(os.path.dirname(path))
    ['note.txt']
"""

from __future__ import annotations

from snnify.validation import write_atomically

__all__ = ["write_atomically"]
