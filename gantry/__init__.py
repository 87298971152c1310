"""Gantry: BlockCloset's control-plane metadata node (SQLite per node, kept identical by Raft)."""

__version__ = "0.1.0"
