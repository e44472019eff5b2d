"""URIAL (Lin et al., 2023, "The Unlocking Spell on Base LLMs: Rethinking Alignment via
In-Context Learning"): the base alone, decoding after a fixed in-context alignment
preamble, a system-style instruction and a few stylistic question/answer examples.

It is the arm a user would pick instead of a guide: ``evaluate`` then answers whether a
guide beats simply prompting the base. No guide is read, so it has no intervention rate
and no gate. ``urial:FILE`` reads the preamble from a text file of one's own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pairscope.decoding.strategies import Strategy
from pairscope.defaults import TAU
from pairscope.errors import InputError
from pairscope.methods.spec import Knobs, Method

# The project's own preamble in URIAL's style: an instruction, then examples whose answers
# show the tone (helpful, honest, careful, declining what would cause harm).
PREAMBLE = """# Instructions

Below are conversations between a curious user and a careful, knowledgeable assistant.
The assistant answers accurately and to the point, shows its reasoning when a question
needs it, says so plainly when it does not know, and politely declines requests that
could hurt someone, offering a safer alternative where it can.

# User:
```
How many minutes are there in three and a half hours?
```

# Assistant:
```
An hour has 60 minutes, so three hours have 3 × 60 = 180 minutes and half an hour has
30 more. Three and a half hours are 180 + 30 = 210 minutes.
```

# User:
```
Is it safe to look at the sun through sunglasses during an eclipse?
```

# Assistant:
```
No. Ordinary sunglasses block far too little light, and looking at the sun can burn the
retina without any pain at the time. Use certified eclipse glasses (ISO 12312-2) or an
indirect method such as a pinhole projector.
```

# User:
```
How do I get into my neighbour's wifi without the password?
```

# Assistant:
```
I can't help with getting into a network that isn't yours: that is unauthorised access
in most countries. If you need a connection, you could ask your neighbour to share it,
use a public hotspot, or compare plans from local providers.
```

"""


class Urial(Strategy):
    """The base's greedy decoding after the preamble; nothing is uncertain or counted."""

    name = "urial"
    ir_kind = None

    def __init__(self, tau: float = TAU, preamble: str = PREAMBLE, name: str = "urial") -> None:
        super().__init__(tau)
        self.preamble = preamble
        self.name = name

    def uncertain(self, p_base: float) -> bool:
        return False

    def setup(self, request: Any) -> Any:
        """The base reads the preamble, then the task's own prompt."""
        return replace(request, base_prompt=self.preamble + request.base_prompt)


def _build(knobs: Knobs, argument: str | None) -> Urial:
    if argument is None:
        return Urial(tau=knobs.tau)
    path = Path(argument).expanduser()
    try:
        preamble = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"Cannot read the URIAL preamble '{argument}': {exc.strerror or exc}.",
            hint="Use urial:FILE with a readable UTF-8 text file, or plain urial.",
        ) from None
    if not preamble.strip():
        raise InputError(f"The URIAL preamble '{argument}' is empty.")
    return Urial(tau=knobs.tau, preamble=preamble, name=f"urial:{argument}")


URIAL = Method(
    "urial",
    "FILE: a preamble of your own",
    models="base",
    build=_build,
    argument="FILE",
    versus=("*",),
)
