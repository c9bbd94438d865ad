"""The messages of upstream TFaaS's ``tfaas.proto`` (package ``tfaaspb``) for ``/proto``.

They are built at import from a descriptor, so no generated ``_pb2`` module has
to match the installed protobuf runtime. ``Row`` carries one input row
(``key``, ``value``, ``model``); ``Predictions`` a list of ``Class``
(``label``, ``probability``).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["Class", "DataFrame", "Predictions", "Row"]

_F = descriptor_pb2.FieldDescriptorProto

# (message, [(field, number, type, repeated, message type)]) as in upstream's tfaas.proto
_MESSAGES = (
    ("Row", [("key", 1, _F.TYPE_STRING, True, None), ("value", 2, _F.TYPE_FLOAT, True, None),
             ("model", 3, _F.TYPE_STRING, False, None)]),
    ("DataFrame", [("row", 1, _F.TYPE_MESSAGE, True, ".tfaaspb.Row")]),
    ("Class", [("label", 1, _F.TYPE_STRING, False, None),
               ("probability", 2, _F.TYPE_FLOAT, False, None)]),
    ("Predictions", [("prediction", 1, _F.TYPE_MESSAGE, True, ".tfaaspb.Class")]),
)  # fmt: skip


def __dir__() -> list[str]:
    return __all__


def _build() -> dict[str, type]:
    file = descriptor_pb2.FileDescriptorProto(
        name="mlaas4hep_nb/tfaas.proto", package="tfaaspb", syntax="proto3"
    )
    for message, fields in _MESSAGES:
        proto = file.message_type.add(name=message)
        for name, number, kind, repeated, type_name in fields:
            field = proto.field.add(
                name=name,
                number=number,
                type=kind,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
                json_name=name,
            )
            if type_name:
                field.type_name = type_name
    # a private pool: a user's own generated tfaaspb module cannot clash with this one
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        message: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tfaaspb.{message}"))
        for message, _ in _MESSAGES
    }


_CLASSES = _build()
Row = _CLASSES["Row"]
DataFrame = _CLASSES["DataFrame"]
Class = _CLASSES["Class"]
Predictions = _CLASSES["Predictions"]
