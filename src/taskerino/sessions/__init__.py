"""Sessions: the front door (`Taskerino`) and the lifecycle behind it.

`library` is the front door; `lifecycle` starts, pauses, resumes and ends the sessions this
process records; `steering` sends those commands to another process's recorder;
`recovery` salvages sessions of dead recorders and runs `doctor`; `configure` checks a
configuration against the rule book and the devices; `views` holds the JSON shapes.
"""

from ..store.watch import Watch
from .library import StartRequest, Taskerino

__all__ = ["StartRequest", "Taskerino", "Watch"]
