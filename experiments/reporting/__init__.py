"""The report engine: one pipeline behind ``plasticity report`` and ``plasticity report --study``.

Modules, one job each:

* :mod:`.declarations` -- what a study file declares for its report (``[report]``,
  ``[[hypotheses]]``): the format, parsed and validated.
* :mod:`.references` -- the matched fresh reference of every arm (refuses a mismatch).
* :mod:`.frame` -- the per-shift analysis frame (adaptation, gaps, probes) from RunData tables.
* :mod:`.inference` -- t on seed means, paired t / Welch, the within-seed slope (CR2),
  run-level dose-response, TOST, detectable effects, random-effects pooling, Holm.
* :mod:`.kinds` -- the registry of hypothesis kinds (keys, checks, estimator, claim).
* :mod:`.outcome` -- one test's outcome and the four verdict words.
* :mod:`.hypotheses` -- the declared family tested, verdicts in the declared direction.
* :mod:`.power` -- ``plasticity power``: detectable effects simulated from a pilot.
* :mod:`.answer` -- the plain-language answer and the README's study-summary block.
* :mod:`.summary` -- every number of a report as typed objects, before anything is written.
* :mod:`.render` / :mod:`.figures` / :mod:`.format` -- markdown, PNGs, shared formatting.
* :mod:`.build` -- the two configurations (generic report, study report) and their outputs.
"""
