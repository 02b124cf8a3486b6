"""What a run that stopped on a signal reports, without torch: the CLI catches `Stopped` and returns its exit
code, and importing it must not make `llmforge --help` wait for torch and transformers to load.

Exit codes: 75 (EX_TEMPFAIL, "try again") after SIGTERM/SIGUSR1, which `llmforge slurm`'s script answers by
requeueing the job; 130 after Ctrl-C.
"""

from __future__ import annotations

EXIT_PREEMPTED, EXIT_INTERRUPTED = 75, 130


class Stopped(Exception):
    """Training stopped on a signal after writing a checkpoint; the run resumes from it."""

    def __init__(self, signal_name: str, step: int, checkpoint: str | None) -> None:
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        self.exit_code = EXIT_INTERRUPTED if signal_name == "SIGINT" else EXIT_PREEMPTED
        saved = f"{checkpoint} is saved" if checkpoint else "no checkpoint could be written"
        super().__init__(f"stopped by {signal_name} after step {step}: {saved}. Run the same command again to "
                         "resume from there.")
