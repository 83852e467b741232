"""The search: :func:`eas.search.loop.run_search` and its steps, stages, state,
checkpoints, callbacks, final training and run folders.

Layers (each imports only those before it): core (``eas.arch``, ``eas.network``, ...)
-> morphisms -> envs -> agents -> config (:mod:`eas.config`) -> reports
(:mod:`eas.reports`) -> search -> command line (:mod:`eas.cli`). Import each name from
its module (``from eas.search.loop import run_search``).
"""
