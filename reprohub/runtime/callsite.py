"""Where a request came from: the ``file:line`` of the repo or test code that made it, for reports.

Example:
    >>> shown_path("/h/reprohub/repos/github/ultralytics/yolov5/" + "a" * 40 + "/hubconf.py")
    'ultralytics/yolov5@aaaaaaaaaaaa/hubconf.py'
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

_LIBRARIES = tuple(sorted({sysconfig.get_paths()[key] + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")}
                          | {str(Path(__file__).resolve().parents[1]) + os.sep}))


def caller() -> str:
    """``file:line`` of the innermost frame that is repo or test code (not the standard library, an
    installed package or reprohub); empty where there is none.

    Example:
        >>> exec(compile("where = caller()", "/srv/project/test_x.py", "exec")); where
        '/srv/project/test_x.py:1'
    """
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith("<") and not name.startswith(_LIBRARIES):
            return f"{shown_path(name)}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


def shown_path(path: str) -> str:
    """A source file as a report names it: relative to the working folder, or ``owner/repo@commit/...`` for
    a file of an extracted hub repo.

    Example:
        >>> shown_path("/h/reprohub/repos/github/ultralytics/yolov5/" + "a" * 40 + "/hubconf.py")
        'ultralytics/yolov5@aaaaaaaaaaaa/hubconf.py'
    """
    marker = f"{os.sep}reprohub{os.sep}repos{os.sep}"
    if marker in path:
        parts = path.split(marker, 1)[1].split(os.sep)
        if len(parts) >= 5:
            return f"{parts[1]}/{parts[2]}@{parts[3][:12]}/{'/'.join(parts[4:])}"
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
