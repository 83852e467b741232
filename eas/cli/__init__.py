"""The command line: ``eas`` with its ``search``, ``compare`` and ``export`` subcommands
(:mod:`eas.cli.main`), ``eas search`` itself (:mod:`eas.cli.search`, also ``eas-search``
and ``python -m eas.train_controller``) and ``eas compare`` (:mod:`eas.cli.compare`, also
``python -m eas.compare``). Their one-line errors and output-folder checks are
:mod:`eas._cli` (in the core, shared with ``eas export``). Import each name from its module.
"""
