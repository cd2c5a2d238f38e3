"""Progress of long work: a bar on a terminal; in a log file or a pipe, where a bar would write thousands of
carriage returns, one plain line at each tenth of the work with the time taken and the time left."""

import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm


class Progress:
    """`total` units of work named `what`; `update()` after each, or `wrap(iterable)` to count its items."""

    def __init__(self, total: int, what: str, unit: str = "step", stream=None):
        self.total, self.what, self.unit = max(int(total), 1), what, unit
        self.stream = stream or sys.stderr
        self.bar = tqdm(total=self.total, desc=what, unit=unit, file=self.stream) if self.stream.isatty() else None
        self.done, self.reported, self.start = 0, 0, time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if self.done >= self.total:
                self.bar.close()
            return
        tenth = min(10, self.done * 10 // self.total)
        if tenth > self.reported:
            self.reported = tenth
            elapsed = time.perf_counter() - self.start
            left = elapsed * (self.total - self.done) / self.done
            units = self.unit + ("es" if self.unit.endswith(("s", "ch", "sh", "x")) else "s")
            print(f"{self.what}: {self.done}/{self.total} {units}, {elapsed:.0f} s, about {left:.0f} s left",
                  file=self.stream, flush=True)

    def wrap(self, iterable: Iterable) -> Iterator:
        for item in iterable:
            yield item
            self.update()
