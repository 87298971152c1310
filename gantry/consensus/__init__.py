"""The consensus layer: agreeing on the log with the other nodes.

:mod:`~gantry.consensus.journal` (the durable, fsync'd Raft log), :mod:`~gantry.consensus.proposals`
(futures of in-flight proposals), :mod:`~gantry.consensus.errors` (the typed consensus errors, and
the one decoding of pysyncobj's FAIL_REASON codes), :mod:`~gantry.consensus.readindex`
(linearizable reads: Raft §6.4 ReadIndex rounds, no log entry;
barrier entries as the fallback) and :mod:`~gantry.consensus.pysyncobj_compat` — the
one module that touches pysyncobj's private names. The Raft actor that drives the engine is
:mod:`gantry.actors.raft`. See docs/ARCHITECTURE.md.
"""
