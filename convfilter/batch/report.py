"""What a batch did: one :class:`Outcome` per file and the :class:`BatchSummary`.

Both give their ``--json`` line with ``to_dict``; the summary people read
comes from :meth:`BatchSummary.to_text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Outcome", "BatchSummary"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one file (``status``: ``ok``, ``skipped`` or ``failed``).

    ``notes`` says what was converted or could not be kept (as ``apply`` prints them).
    """

    input: str
    output: str | None
    status: str
    error: str | None = None
    milliseconds: float = 0.0
    reason: str | None = None
    index: int | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The ``--json`` line of one file."""
        return {
            "type": "file",
            "index": self.index,
            "input": self.input,
            "output": self.output,
            "status": self.status,
            "error": self.error,
            "reason": self.reason,
            "notes": list(self.notes),
            "milliseconds": round(self.milliseconds, 3),
        }


@dataclass
class BatchSummary:
    """What a batch did: counts, failures, time; ``interrupted`` names the signal."""

    planned: int
    processed: int = 0
    skipped: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    noted: list[Outcome] = field(default_factory=list)  # processed files with notes
    unfinished: int = 0  # planned files neither processed nor failed (interrupted, --fail-fast)
    seconds: float = 0.0
    interrupted: str | None = None
    stopped_early: bool = False

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def add(self, outcome: Outcome) -> None:
        """Count one file's outcome."""
        if outcome.status == "ok":
            self.processed += 1
            if outcome.notes:
                self.noted.append(outcome)
        elif outcome.status == "skipped":
            self.skipped.append(outcome)
        else:
            self.failed.append(outcome)

    def to_dict(self) -> dict:
        """The final ``--json`` line."""
        failures = sorted(self.failed, key=lambda o: (o.index is None, o.index or 0))
        return {
            "type": "summary",
            "processed": self.processed,
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "unfinished": self.unfinished,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "interrupted": self.interrupted,
            "stopped_early": self.stopped_early,
            "failures": [{"input": o.input, "error": o.error} for o in failures],
            "noted": len(self.noted),
        }

    def to_text(self) -> str:
        """The summary people read: counts, time and rate, then the notes of each file
        (failures are reported one by one as they happen, on standard error)."""
        reasons: dict[str, int] = {}
        for outcome in self.skipped:
            reasons[outcome.reason or "skipped"] = reasons.get(outcome.reason or "skipped", 0) + 1
        detail = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        skipped = f"skipped {len(self.skipped)}" + (f" ({detail})" if detail else "")
        line = (
            f"processed {self.processed}, {skipped}, failed {len(self.failed)} "
            f"in {self.seconds:.2f} s ({self.images_per_second:.1f} images/s)"
        )
        lines = []
        if self.interrupted:
            lines.append(f"interrupted by {self.interrupted}; {self.unfinished} not processed")
        elif self.stopped_early:
            lines.append(f"stopped after the first failure (--fail-fast); {self.unfinished} not processed")
        lines.append(line)
        if self.noted:
            lines.append("notes:")
            for outcome in sorted(self.noted, key=lambda o: o.index or 0):
                lines += [_printable(f"  {outcome.input}: {note}") for note in outcome.notes]
        return "\n".join(lines)


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a file name cannot split a summary line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
