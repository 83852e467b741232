"""Reports written from a search's history: the summary table and progress plot
(:mod:`eas.reports.summary`), Pareto fronts, hypervolumes and plots
(:mod:`eas.reports.pareto`), and the agent comparison's tables and plot
(:mod:`eas.reports.compare`). They import no search code. Import each name from its module.
"""
