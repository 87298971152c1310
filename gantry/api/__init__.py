"""The API layer: gRPC in, statuses out.

:mod:`~gantry.api.rpc` (the wrapper every method runs in: malformed requests, status mapping of
:class:`~gantry.api.errors.RpcError`, one ``rpc_finished`` line), :mod:`~gantry.api.errors`
(statuses and packed details; ``STATUSES``, the one table from domain outcome or consensus error
to status), :mod:`~gantry.api.service` (``GantryService``),
:mod:`~gantry.api.admin` (``ClusterService``) and :mod:`~gantry.api.reads` (the consistency level a
read asks for, and the wait for it). The gRPC server itself is :mod:`gantry.actors.frontdoor`.
See docs/ARCHITECTURE.md.
"""
