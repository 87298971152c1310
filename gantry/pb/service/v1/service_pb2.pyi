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
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBucketsResponse(_message.Message):
    __slots__ = ("buckets",)
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[_bucket_pb2.Bucket]
    def __init__(self, buckets: _Optional[_Iterable[_Union[_bucket_pb2.Bucket, _Mapping]]] = ...) -> None: ...

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
