"""The state layer: what a log entry is and what applying it does to the SQLite file.

:mod:`~gantry.state.commands` (the ``Command`` codec), :mod:`~gantry.state.statemachine` (pure
``apply(conn, index, command) -> ApplyResult``), :mod:`~gantry.state.listing` (the read queries
beside it), :mod:`~gantry.state.snapshot` (the database as a Raft snapshot) and
:mod:`~gantry.state.migrate` with ``migrations/`` (the schema). Nothing here knows about Raft,
threads or gRPC; see docs/ARCHITECTURE.md.
"""
