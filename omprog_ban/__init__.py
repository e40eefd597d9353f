"""omprog-ban: ban abusive clients from rsyslog or journald, in the kernel, exactly.

The pipeline is a chain of small stages, each with a one-line contract::

    source (omprog stdin | journal | file) -> LogLine
        -> grammar (pyparsing, one module per service)  -> Failure
        -> jails (rules, when/unless field filters)     -> (Jail, Failure)
        -> engine (pure sliding-window Tracker)         -> Ban
        -> backend (nftables set element with timeout)  -> the kernel expires it

Sources frame, grammars parse, the engine decides, the backend acts. Every value
passed between stages is a small immutable value from :mod:`omprog_ban.model`.
"""

__version__ = "0.1.0"
