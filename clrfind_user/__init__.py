"""The modules clrfind imports from spec file targets, as ``clrfind_user.<stem>_<path in hex>``.

A real package, so that objects defined in those files can be unpickled in another process: DataLoader workers
started with spawn or forkserver (the default on macOS and Windows, and on Linux from Python 3.14), or a whole model
saved with torch.save. The submodule's name encodes the file's path, so importing it here runs that file again, as
the spec did, with its folder first on sys.path.
"""

from __future__ import annotations

import sys

from clrfind.targets import UserFileFinder

if not any(isinstance(finder, UserFileFinder) for finder in sys.meta_path):
    sys.meta_path.append(UserFileFinder())
