"""Writing a file whole or not at all.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> write_atomically(path, lambda p: open(p, "w").close())
    >>> os.listdir(os.path.dirname(path))
    ['note.txt']
"""

from __future__ import annotations

import os
import tempfile


def write_atomically(path, write) -> None:
    """Call ``write(temporary)`` on a file next to ``path``, then rename it.

    The temporary file has ``path``'s suffix (some writers need it) and the
    permissions a new file gets; if ``write`` fails it is removed, so ``path``
    is either the complete new file or what it was before.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, temporary = tempfile.mkstemp(suffix=suffix, prefix=".snnify-", dir=folder)
    os.close(fd)
    try:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
