"""Regenerate the ``_pb2`` modules of ``mlaas4hep_nb/tfaas/server/protos`` from their .proto files.

    python scripts/gen_protos.py            # or: make protos
    python scripts/gen_protos.py --check    # exit 1 if a shipped module is not its .proto

Needs grpcio-tools (the ``test`` extra). TensorFlow's own messages (TensorProto,
SignatureDef) are not copied: their descriptors come from the installed
TensorFlow (``--descriptor_set_in``), and the generated modules import
``tensorflow.core``'s, as tensorflow-serving-api does.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = Path("mlaas4hep_nb/tfaas/server/protos")


def _tensorflow_descriptors(out: Path) -> Path:
    """A FileDescriptorSet of TensorFlow's tensor and meta_graph protos and their imports."""
    from google.protobuf import descriptor_pb2
    from tensorflow.core.framework import tensor_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    files, todo = {}, [tensor_pb2.DESCRIPTOR, meta_graph_pb2.DESCRIPTOR]
    while todo:
        file = todo.pop()
        if file.name not in files and not file.name.startswith("google/protobuf/"):
            files[file.name] = file
            todo.extend(file.dependencies)
    found = descriptor_pb2.FileDescriptorSet()
    for file in files.values():
        file.CopyToProto(found.file.add())
    path = out / "tensorflow.pb"
    path.write_bytes(found.SerializeToString())
    return path


def protoc(out: Path, *outputs: str) -> None:
    """Run grpcio-tools' protoc on the shipped .proto files with ``outputs`` into ``out``."""
    import grpc_tools

    includes = Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / PROTOS).glob("*.proto"))
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={ROOT}",
        f"--proto_path={includes}",
        f"--descriptor_set_in={_tensorflow_descriptors(out)}",
        *outputs,
        *sources,
    ]
    subprocess.run(command, check=True, cwd=ROOT)


def _without_json_names(message) -> None:
    # protoc's python_out leaves out the json_name of every field; so does this
    for field in message.field:
        field.ClearField("json_name")
    for nested in message.nested_type:
        _without_json_names(nested)


def stale_modules() -> list[str]:
    """The shipped ``_pb2`` modules whose descriptor is not what protoc makes of their .proto.

    Compares descriptors, not text: another grpcio-tools writes other text for
    the same messages.
    """
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as tmp:
        made = Path(tmp) / "protos.pb"
        protoc(Path(tmp), f"--descriptor_set_out={made}")
        found = descriptor_pb2.FileDescriptorSet.FromString(made.read_bytes())
    stale = []
    for file in found.file:
        for message in file.message_type:
            _without_json_names(message)
        module = file.name.removesuffix(".proto").replace("/", ".") + "_pb2"
        shipped = importlib.import_module(module).DESCRIPTOR.serialized_pb
        if descriptor_pb2.FileDescriptorProto.FromString(shipped) != file:
            stale.append(module)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args()
    if args.check:
        stale = stale_modules()
        print("not their .proto: " + ", ".join(stale) if stale else "the shipped modules match")
        return 1 if stale else 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        protoc(out, f"--python_out={out}", f"--pyi_out={out}")
        for path in sorted((out / PROTOS).iterdir()):
            (ROOT / PROTOS / path.name).write_bytes(path.read_bytes())
            print(f"wrote {PROTOS / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
