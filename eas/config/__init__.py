"""The search's configuration: one self-validating dataclass per TOML section
(:mod:`eas.config.sections`), which section holds each agent's settings
(:mod:`eas.config.agent_sections`), typed values and field docs
(:mod:`eas.config.field_types`), checks across sections and on loaded data
(:mod:`eas.config.checks`), and the engine that reads TOML presets and
``--section.field`` overrides into them (:mod:`eas.config.engine`).

Nothing here runs a search; the search (:mod:`eas.search`), the reports and the
command line import it, never the other way round. Import each name from its module.
"""
