"""The report engine: one pipeline behind ``plasticity report`` and ``plasticity report --study``.

Modules, one job each:

* :mod:`.declarations` -- what a study file declares for its report (``[report]``,
  ``[[hypotheses]]``): the format, parsed and validated.
* :mod:`.references` -- the matched fresh reference of every arm (refuses a mismatch).
* :mod:`.frame` -- the per-shift analysis frame (adaptation, gaps, probes) from RunData tables.
* :mod:`.inference` -- cluster bootstrap over seeds, the within-seed mixed model, Holm.
* :mod:`.hypotheses` -- the declared family tested, verdicts in the declared direction.
* :mod:`.summary` -- every number of a report as typed objects, before anything is written.
* :mod:`.render` / :mod:`.figures` / :mod:`.format` -- markdown, PNGs, shared formatting.
* :mod:`.build` -- the two configurations (generic report, study report) and their outputs.
"""
