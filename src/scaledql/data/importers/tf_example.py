"""``tf.train.Example`` parsed with the ``protobuf`` library, without TensorFlow.

The messages are TensorFlow's (``tensorflow/core/example/example.proto`` and ``feature.proto``,
package ``tensorflow``; field numbers and types as there)::

    message BytesList { repeated bytes value = 1; }
    message FloatList { repeated float value = 1 [packed = true]; }
    message Int64List { repeated int64 value = 1 [packed = true]; }
    message Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                                   Int64List int64_list = 3; } }
    message Features { map<string, Feature> feature = 1; }
    message Example { Features features = 1; }

Their descriptors are built here at run time (``descriptor_pb2``) in a private descriptor pool,
so nothing is generated and a TensorFlow imported in the same process does not clash. Parsing is
protobuf's (its C ``upb`` backend); a record that is not such a message is one ``UserError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from scaledql.errors import UserError

KINDS = ("bytes_list", "float_list", "int64_list")


def _file() -> descriptor_pb2.FileDescriptorProto:
    F = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="scaledql/tf_example.proto", package="tensorflow",
                                           syntax="proto3")

    def msg(name: str, *fields: tuple[str, int, int, int, str | None]) -> Any:
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    msg("BytesList", ("value", 1, F.TYPE_BYTES, rep, None))
    for name, t in (("FloatList", F.TYPE_FLOAT), ("Int64List", F.TYPE_INT64)):
        msg(name, ("value", 1, t, rep, None)).field[0].options.packed = True
    feature = msg("Feature", ("bytes_list", 1, F.TYPE_MESSAGE, opt, ".tensorflow.BytesList"),
                  ("float_list", 2, F.TYPE_MESSAGE, opt, ".tensorflow.FloatList"),
                  ("int64_list", 3, F.TYPE_MESSAGE, opt, ".tensorflow.Int64List"))
    feature.oneof_decl.add(name="kind")
    for fd in feature.field:
        fd.oneof_index = 0
    features = msg("Features", ("feature", 1, F.TYPE_MESSAGE, rep,
                                ".tensorflow.Features.FeatureEntry"))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt,
                    type_name=".tensorflow.Feature")
    msg("Example", ("features", 1, F.TYPE_MESSAGE, opt, ".tensorflow.Features"))
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))


class ParsedExample:
    """An Example's features: ``kind(name)`` ("bytes_list", ...; None when absent or empty
    oneof), ``ints``/``floats`` as numpy arrays, ``bytes`` as a sequence of ``bytes``."""

    def __init__(self, data: bytes, where: str):
        self.where = where
        ex = Example()
        try:
            ex.ParseFromString(data)
        except (message.DecodeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{where}: not a tf.train.Example ({exc})") from None
        self.features = ex.features.feature

    def names(self) -> set[str]:
        return set(self.features.keys())

    def kind(self, name: str) -> str | None:
        if name not in self.features:
            return None
        return self.features[name].WhichOneof("kind")

    def _values(self, name: str, kind: str) -> Any:
        got = self.kind(name)
        if got != kind:
            raise UserError(f"{self.where}: feature {name!r} is "
                            f"{'missing' if got is None else 'a ' + got}, expected a {kind}")
        return getattr(self.features[name], kind).value

    def ints(self, name: str) -> np.ndarray:
        return np.array(self._values(name, "int64_list"), np.int64)

    def floats(self, name: str) -> np.ndarray:
        return np.array(self._values(name, "float_list"), np.float32)

    def bytes(self, name: str) -> Any:
        return self._values(name, "bytes_list")

    def scalar(self, name: str, kind: str) -> float | int:
        values = self.ints(name) if kind == "int64_list" else self.floats(name)
        if values.shape != (1,):
            raise UserError(f"{self.where}: feature {name!r} holds {len(values)} values, "
                            "expected one")
        return values[0].item()
