from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class WritePlan(_message.Message):
    __slots__ = ("object_id", "cradle_address")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CRADLE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    cradle_address: str
    def __init__(self, object_id: _Optional[str] = ..., cradle_address: _Optional[str] = ...) -> None: ...
