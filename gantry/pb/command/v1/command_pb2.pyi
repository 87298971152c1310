from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Command(_message.Message):
    __slots__ = ("version", "proposal_id", "request_id", "timestamp_us", "create_bucket", "register_cradle_server", "plan_write", "commit_object", "barrier", "register_node", "delete_bucket", "delete_object", "abort_object", "update_cradle_status", "unregister_cradle_server", "delete_objects", "put_objects")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    CREATE_BUCKET_FIELD_NUMBER: _ClassVar[int]
    REGISTER_CRADLE_SERVER_FIELD_NUMBER: _ClassVar[int]
    PLAN_WRITE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_OBJECT_FIELD_NUMBER: _ClassVar[int]
    BARRIER_FIELD_NUMBER: _ClassVar[int]
    REGISTER_NODE_FIELD_NUMBER: _ClassVar[int]
    DELETE_BUCKET_FIELD_NUMBER: _ClassVar[int]
    DELETE_OBJECT_FIELD_NUMBER: _ClassVar[int]
    ABORT_OBJECT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_CRADLE_STATUS_FIELD_NUMBER: _ClassVar[int]
    UNREGISTER_CRADLE_SERVER_FIELD_NUMBER: _ClassVar[int]
    DELETE_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    PUT_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    version: int
    proposal_id: str
    request_id: str
    timestamp_us: int
    create_bucket: CreateBucket
    register_cradle_server: RegisterCradleServer
    plan_write: PlanWrite
    commit_object: CommitObject
    barrier: Barrier
    register_node: RegisterNode
    delete_bucket: DeleteBucket
    delete_object: DeleteObject
    abort_object: AbortObject
    update_cradle_status: UpdateCradleStatus
    unregister_cradle_server: UnregisterCradleServer
    delete_objects: DeleteObjects
    put_objects: PutObjects
    def __init__(self, version: _Optional[int] = ..., proposal_id: _Optional[str] = ..., request_id: _Optional[str] = ..., timestamp_us: _Optional[int] = ..., create_bucket: _Optional[_Union[CreateBucket, _Mapping]] = ..., register_cradle_server: _Optional[_Union[RegisterCradleServer, _Mapping]] = ..., plan_write: _Optional[_Union[PlanWrite, _Mapping]] = ..., commit_object: _Optional[_Union[CommitObject, _Mapping]] = ..., barrier: _Optional[_Union[Barrier, _Mapping]] = ..., register_node: _Optional[_Union[RegisterNode, _Mapping]] = ..., delete_bucket: _Optional[_Union[DeleteBucket, _Mapping]] = ..., delete_object: _Optional[_Union[DeleteObject, _Mapping]] = ..., abort_object: _Optional[_Union[AbortObject, _Mapping]] = ..., update_cradle_status: _Optional[_Union[UpdateCradleStatus, _Mapping]] = ..., unregister_cradle_server: _Optional[_Union[UnregisterCradleServer, _Mapping]] = ..., delete_objects: _Optional[_Union[DeleteObjects, _Mapping]] = ..., put_objects: _Optional[_Union[PutObjects, _Mapping]] = ...) -> None: ...

class CreateBucket(_message.Message):
    __slots__ = ("bucket_id", "name")
    BUCKET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    bucket_id: str
    name: str
    def __init__(self, bucket_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RegisterCradleServer(_message.Message):
    __slots__ = ("cradle_server_id", "address")
    CRADLE_SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    cradle_server_id: str
    address: str
    def __init__(self, cradle_server_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class PlanWrite(_message.Message):
    __slots__ = ("object_id", "bucket", "key", "size", "cradle_server_id")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CRADLE_SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    bucket: str
    key: str
    size: int
    cradle_server_id: str
    def __init__(self, object_id: _Optional[str] = ..., bucket: _Optional[str] = ..., key: _Optional[str] = ..., size: _Optional[int] = ..., cradle_server_id: _Optional[str] = ...) -> None: ...

class CommitObject(_message.Message):
    __slots__ = ("object_id", "size", "last_modified_ms")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_MS_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    size: int
    last_modified_ms: int
    def __init__(self, object_id: _Optional[str] = ..., size: _Optional[int] = ..., last_modified_ms: _Optional[int] = ...) -> None: ...

class Barrier(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterNode(_message.Message):
    __slots__ = ("raft_addr", "node_id", "grpc_addr")
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    raft_addr: str
    node_id: str
    grpc_addr: str
    def __init__(self, raft_addr: _Optional[str] = ..., node_id: _Optional[str] = ..., grpc_addr: _Optional[str] = ...) -> None: ...

class DeleteBucket(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteObject(_message.Message):
    __slots__ = ("bucket", "key")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class AbortObject(_message.Message):
    __slots__ = ("object_id",)
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    def __init__(self, object_id: _Optional[str] = ...) -> None: ...

class UpdateCradleStatus(_message.Message):
    __slots__ = ("cradle_server_id", "status", "available_bytes", "consecutive_misses", "last_heartbeat_us")
    CRADLE_SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_MISSES_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_US_FIELD_NUMBER: _ClassVar[int]
    cradle_server_id: str
    status: str
    available_bytes: int
    consecutive_misses: int
    last_heartbeat_us: int
    def __init__(self, cradle_server_id: _Optional[str] = ..., status: _Optional[str] = ..., available_bytes: _Optional[int] = ..., consecutive_misses: _Optional[int] = ..., last_heartbeat_us: _Optional[int] = ...) -> None: ...

class UnregisterCradleServer(_message.Message):
    __slots__ = ("address", "force")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    address: str
    force: bool
    def __init__(self, address: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeleteObjects(_message.Message):
    __slots__ = ("bucket", "keys", "request_sha256")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    request_sha256: bytes
    def __init__(self, bucket: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., request_sha256: _Optional[bytes] = ...) -> None: ...

class PutObject(_message.Message):
    __slots__ = ("object_id", "key", "size", "last_modified_ms", "cradle_server_id")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_MS_FIELD_NUMBER: _ClassVar[int]
    CRADLE_SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    key: str
    size: int
    last_modified_ms: int
    cradle_server_id: str
    def __init__(self, object_id: _Optional[str] = ..., key: _Optional[str] = ..., size: _Optional[int] = ..., last_modified_ms: _Optional[int] = ..., cradle_server_id: _Optional[str] = ...) -> None: ...

class PutObjects(_message.Message):
    __slots__ = ("bucket", "objects", "request_sha256")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    objects: _containers.RepeatedCompositeFieldContainer[PutObject]
    request_sha256: bytes
    def __init__(self, bucket: _Optional[str] = ..., objects: _Optional[_Iterable[_Union[PutObject, _Mapping]]] = ..., request_sha256: _Optional[bytes] = ...) -> None: ...
