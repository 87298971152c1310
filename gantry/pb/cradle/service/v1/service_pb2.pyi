from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class HeartbeatRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("available_bytes",)
    AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    available_bytes: int
    def __init__(self, available_bytes: _Optional[int] = ...) -> None: ...
