from gantry.pb.bucket.v1 import bucket_pb2 as _bucket_pb2
from gantry.pb.write_plan.v1 import write_plan_pb2 as _write_plan_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateBucketRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateBucketResponse(_message.Message):
    __slots__ = ("bucket",)
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    bucket: _bucket_pb2.Bucket
    def __init__(self, bucket: _Optional[_Union[_bucket_pb2.Bucket, _Mapping]] = ...) -> None: ...

class ListBucketsRequest(_message.Message):
    __slots__ = ("max_buckets", "continuation_token")
    MAX_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    max_buckets: int
    continuation_token: str
    def __init__(self, max_buckets: _Optional[int] = ..., continuation_token: _Optional[str] = ...) -> None: ...

class ListBucketsResponse(_message.Message):
    __slots__ = ("buckets", "next_continuation_token")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[_bucket_pb2.Bucket]
    next_continuation_token: str
    def __init__(self, buckets: _Optional[_Iterable[_Union[_bucket_pb2.Bucket, _Mapping]]] = ..., next_continuation_token: _Optional[str] = ...) -> None: ...

class PlanWriteRequest(_message.Message):
    __slots__ = ("bucket", "key", "size")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    size: int
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class PlanWriteResponse(_message.Message):
    __slots__ = ("write_plan",)
    WRITE_PLAN_FIELD_NUMBER: _ClassVar[int]
    write_plan: _write_plan_pb2.WritePlan
    def __init__(self, write_plan: _Optional[_Union[_write_plan_pb2.WritePlan, _Mapping]] = ...) -> None: ...

class CommitObjectRequest(_message.Message):
    __slots__ = ("object_id", "size", "last_modified_ms")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_MS_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    size: int
    last_modified_ms: int
    def __init__(self, object_id: _Optional[str] = ..., size: _Optional[int] = ..., last_modified_ms: _Optional[int] = ...) -> None: ...

class CommitObjectResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BucketOwnershipConflict(_message.Message):
    __slots__ = ("reason", "bucket")
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REASON_UNSPECIFIED: _ClassVar[BucketOwnershipConflict.Reason]
        REASON_BUCKET_ALREADY_OWNED_BY_YOU: _ClassVar[BucketOwnershipConflict.Reason]
        REASON_BUCKET_ALREADY_EXISTS: _ClassVar[BucketOwnershipConflict.Reason]
    REASON_UNSPECIFIED: BucketOwnershipConflict.Reason
    REASON_BUCKET_ALREADY_OWNED_BY_YOU: BucketOwnershipConflict.Reason
    REASON_BUCKET_ALREADY_EXISTS: BucketOwnershipConflict.Reason
    REASON_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    reason: BucketOwnershipConflict.Reason
    bucket: str
    def __init__(self, reason: _Optional[_Union[BucketOwnershipConflict.Reason, str]] = ..., bucket: _Optional[str] = ...) -> None: ...

class PlanWriteError(_message.Message):
    __slots__ = ("reason", "bucket")
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REASON_UNSPECIFIED: _ClassVar[PlanWriteError.Reason]
        REASON_BUCKET_NOT_FOUND: _ClassVar[PlanWriteError.Reason]
        REASON_BUCKET_ACCESS_DENIED: _ClassVar[PlanWriteError.Reason]
        REASON_NO_CRADLE_SERVERS: _ClassVar[PlanWriteError.Reason]
    REASON_UNSPECIFIED: PlanWriteError.Reason
    REASON_BUCKET_NOT_FOUND: PlanWriteError.Reason
    REASON_BUCKET_ACCESS_DENIED: PlanWriteError.Reason
    REASON_NO_CRADLE_SERVERS: PlanWriteError.Reason
    REASON_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    reason: PlanWriteError.Reason
    bucket: str
    def __init__(self, reason: _Optional[_Union[PlanWriteError.Reason, str]] = ..., bucket: _Optional[str] = ...) -> None: ...

class GetBucketRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetBucketResponse(_message.Message):
    __slots__ = ("bucket",)
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    bucket: _bucket_pb2.Bucket
    def __init__(self, bucket: _Optional[_Union[_bucket_pb2.Bucket, _Mapping]] = ...) -> None: ...

class DeleteBucketRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteBucketResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeadObjectRequest(_message.Message):
    __slots__ = ("bucket", "key")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class HeadObjectResponse(_message.Message):
    __slots__ = ("object_id", "size", "last_modified_ms", "cradle_address")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_MS_FIELD_NUMBER: _ClassVar[int]
    CRADLE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    size: int
    last_modified_ms: int
    cradle_address: str
    def __init__(self, object_id: _Optional[str] = ..., size: _Optional[int] = ..., last_modified_ms: _Optional[int] = ..., cradle_address: _Optional[str] = ...) -> None: ...

class ListObjectsRequest(_message.Message):
    __slots__ = ("bucket", "prefix", "delimiter", "start_after", "max_keys", "continuation_token")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DELIMITER_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    prefix: str
    delimiter: str
    start_after: str
    max_keys: int
    continuation_token: str
    def __init__(self, bucket: _Optional[str] = ..., prefix: _Optional[str] = ..., delimiter: _Optional[str] = ..., start_after: _Optional[str] = ..., max_keys: _Optional[int] = ..., continuation_token: _Optional[str] = ...) -> None: ...

class ObjectSummary(_message.Message):
    __slots__ = ("key", "object_id", "size", "last_modified_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_MS_FIELD_NUMBER: _ClassVar[int]
    key: str
    object_id: str
    size: int
    last_modified_ms: int
    def __init__(self, key: _Optional[str] = ..., object_id: _Optional[str] = ..., size: _Optional[int] = ..., last_modified_ms: _Optional[int] = ...) -> None: ...

class ListObjectsResponse(_message.Message):
    __slots__ = ("contents", "common_prefixes", "is_truncated", "next_continuation_token", "key_count")
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    COMMON_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    IS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    contents: _containers.RepeatedCompositeFieldContainer[ObjectSummary]
    common_prefixes: _containers.RepeatedScalarFieldContainer[str]
    is_truncated: bool
    next_continuation_token: str
    key_count: int
    def __init__(self, contents: _Optional[_Iterable[_Union[ObjectSummary, _Mapping]]] = ..., common_prefixes: _Optional[_Iterable[str]] = ..., is_truncated: _Optional[bool] = ..., next_continuation_token: _Optional[str] = ..., key_count: _Optional[int] = ...) -> None: ...

class DeleteObjectRequest(_message.Message):
    __slots__ = ("bucket", "key")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class DeleteObjectResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AbortObjectRequest(_message.Message):
    __slots__ = ("object_id",)
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    def __init__(self, object_id: _Optional[str] = ...) -> None: ...

class AbortObjectResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CradleServer(_message.Message):
    __slots__ = ("id", "address", "status", "available_bytes", "last_heartbeat_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    status: str
    available_bytes: int
    last_heartbeat_ms: int
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., status: _Optional[str] = ..., available_bytes: _Optional[int] = ..., last_heartbeat_ms: _Optional[int] = ...) -> None: ...

class RegisterCradleServerRequest(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class RegisterCradleServerResponse(_message.Message):
    __slots__ = ("cradle_server",)
    CRADLE_SERVER_FIELD_NUMBER: _ClassVar[int]
    cradle_server: CradleServer
    def __init__(self, cradle_server: _Optional[_Union[CradleServer, _Mapping]] = ...) -> None: ...

class ListCradleServersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCradleServersResponse(_message.Message):
    __slots__ = ("cradle_servers",)
    CRADLE_SERVERS_FIELD_NUMBER: _ClassVar[int]
    cradle_servers: _containers.RepeatedCompositeFieldContainer[CradleServer]
    def __init__(self, cradle_servers: _Optional[_Iterable[_Union[CradleServer, _Mapping]]] = ...) -> None: ...

class DeleteObjectsRequest(_message.Message):
    __slots__ = ("bucket", "keys", "quiet")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    QUIET_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    quiet: bool
    def __init__(self, bucket: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., quiet: _Optional[bool] = ...) -> None: ...

class DeletedObject(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class DeleteObjectsError(_message.Message):
    __slots__ = ("key", "code", "message")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    key: str
    code: str
    message: str
    def __init__(self, key: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class DeleteObjectsResponse(_message.Message):
    __slots__ = ("deleted", "errors")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedCompositeFieldContainer[DeletedObject]
    errors: _containers.RepeatedCompositeFieldContainer[DeleteObjectsError]
    def __init__(self, deleted: _Optional[_Iterable[_Union[DeletedObject, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[DeleteObjectsError, _Mapping]]] = ...) -> None: ...

class PutObjectsEntry(_message.Message):
    __slots__ = ("key", "size", "last_modified_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_MS_FIELD_NUMBER: _ClassVar[int]
    key: str
    size: int
    last_modified_ms: int
    def __init__(self, key: _Optional[str] = ..., size: _Optional[int] = ..., last_modified_ms: _Optional[int] = ...) -> None: ...

class PutObjectsRequest(_message.Message):
    __slots__ = ("bucket", "objects")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    objects: _containers.RepeatedCompositeFieldContainer[PutObjectsEntry]
    def __init__(self, bucket: _Optional[str] = ..., objects: _Optional[_Iterable[_Union[PutObjectsEntry, _Mapping]]] = ...) -> None: ...

class PutObjectsResult(_message.Message):
    __slots__ = ("code", "message", "object_id", "cradle_address")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CRADLE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    object_id: str
    cradle_address: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., object_id: _Optional[str] = ..., cradle_address: _Optional[str] = ...) -> None: ...

class PutObjectsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PutObjectsResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PutObjectsResult, _Mapping]]] = ...) -> None: ...
