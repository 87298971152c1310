from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Member(_message.Message):
    __slots__ = ("raft_addr", "node_id", "grpc_addr", "connected", "is_self", "is_leader")
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    IS_SELF_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    raft_addr: str
    node_id: str
    grpc_addr: str
    connected: bool
    is_self: bool
    is_leader: bool
    def __init__(self, raft_addr: _Optional[str] = ..., node_id: _Optional[str] = ..., grpc_addr: _Optional[str] = ..., connected: _Optional[bool] = ..., is_self: _Optional[bool] = ..., is_leader: _Optional[bool] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "raft_addr", "grpc_addr", "role", "leader_raft_addr", "leader_grpc_addr", "term", "commit_index", "applied_index", "last_applied", "last_snapshot_index", "members", "serving", "log_entries")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LEADER_RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    LEADER_GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLIED_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    LOG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_addr: str
    grpc_addr: str
    role: str
    leader_raft_addr: str
    leader_grpc_addr: str
    term: int
    commit_index: int
    applied_index: int
    last_applied: int
    last_snapshot_index: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    serving: bool
    log_entries: int
    def __init__(self, node_id: _Optional[str] = ..., raft_addr: _Optional[str] = ..., grpc_addr: _Optional[str] = ..., role: _Optional[str] = ..., leader_raft_addr: _Optional[str] = ..., leader_grpc_addr: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_applied: _Optional[int] = ..., last_snapshot_index: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., serving: _Optional[bool] = ..., log_entries: _Optional[int] = ...) -> None: ...

class AddNodeRequest(_message.Message):
    __slots__ = ("raft_addr",)
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    raft_addr: str
    def __init__(self, raft_addr: _Optional[str] = ...) -> None: ...

class AddNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("raft_addr",)
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    raft_addr: str
    def __init__(self, raft_addr: _Optional[str] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TransferLeadershipRequest(_message.Message):
    __slots__ = ("raft_addr",)
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    raft_addr: str
    def __init__(self, raft_addr: _Optional[str] = ...) -> None: ...

class TransferLeadershipResponse(_message.Message):
    __slots__ = ("new_leader_raft_addr",)
    NEW_LEADER_RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    new_leader_raft_addr: str
    def __init__(self, new_leader_raft_addr: _Optional[str] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ("chunk_bytes",)
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    chunk_bytes: int
    def __init__(self, chunk_bytes: _Optional[int] = ...) -> None: ...

class BackupHeader(_message.Message):
    __slots__ = ("size_bytes", "applied_index", "applied_term", "node_id", "raft_addr")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_TERM_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    applied_index: int
    applied_term: int
    node_id: str
    raft_addr: str
    def __init__(self, size_bytes: _Optional[int] = ..., applied_index: _Optional[int] = ..., applied_term: _Optional[int] = ..., node_id: _Optional[str] = ..., raft_addr: _Optional[str] = ...) -> None: ...

class BackupTrailer(_message.Message):
    __slots__ = ("size_bytes", "applied_index", "applied_term", "sha256")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_TERM_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    applied_index: int
    applied_term: int
    sha256: bytes
    def __init__(self, size_bytes: _Optional[int] = ..., applied_index: _Optional[int] = ..., applied_term: _Optional[int] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class BackupChunk(_message.Message):
    __slots__ = ("header", "data", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: BackupHeader
    data: bytes
    trailer: BackupTrailer
    def __init__(self, header: _Optional[_Union[BackupHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., trailer: _Optional[_Union[BackupTrailer, _Mapping]] = ...) -> None: ...

class UnregisterCradleServerRequest(_message.Message):
    __slots__ = ("address", "force")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    address: str
    force: bool
    def __init__(self, address: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class UnregisterCradleServerResponse(_message.Message):
    __slots__ = ("cradle_server_id", "address", "live_objects")
    CRADLE_SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LIVE_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    cradle_server_id: str
    address: str
    live_objects: int
    def __init__(self, cradle_server_id: _Optional[str] = ..., address: _Optional[str] = ..., live_objects: _Optional[int] = ...) -> None: ...
