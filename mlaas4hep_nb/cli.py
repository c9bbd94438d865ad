"""The ``mlaas4hep-nb`` command: another view over the same public API as the widgets."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def __dir__() -> list[str]:
    return __all__


def _table(rows: Sequence[Sequence[object]], head: Sequence[str]) -> str:
    cells = [[str(c) for c in row] for row in [head, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def browse_text(path: str | Sequence[str], tree: str | None = None) -> str:
    """Trees, then the branches of each (or of ``tree``), as text tables."""
    from .data.sources import branches, list_trees
    from .errors import SchemaError

    trees = list_trees(path)
    if tree is not None and tree not in {t.name for t in trees}:
        where = path if isinstance(path, str) else " ".join(path)
        held = sorted(t.name for t in trees) or "no trees"
        msg = f"no tree {tree!r} in {where}; it holds {held}"
        raise SchemaError(msg)
    out = [
        _table(
            [(t.name, t.kind, t.entries, t.files) for t in trees],
            ("tree", "kind", "entries", "files"),
        )
    ]
    for info in trees:
        if tree is not None and info.name != tree:
            continue
        rows = [
            (
                b.name,
                b.typename,
                b.dtype or "-",
                b.shape,
                "yes" if b.supported else f"no: {b.reason}",
            )
            for b in branches(path, info.name)
        ]
        out.append(
            f"\n{info.name}:\n" + _table(rows, ("branch", "type", "dtype", "shape", "usable"))
        )
    return "\n".join(out)


def _cmd_make_data(args: argparse.Namespace) -> None:
    from .datasets import make_tth

    files = make_tth(
        args.out, args.signal, args.background, seed=args.seed, fmt=args.fmt, n_files=args.files
    )
    for label, paths in files.items():
        print(f"label {label}: " + " ".join(paths))


def _cmd_datasets(args: argparse.Namespace) -> None:
    from .datasets import available

    rows = [
        (d.name, d.size_text, "stream" if d.streamed else "download", d.tree, d.description)
        for d in available()
    ]
    print(_table(rows, ("name", "size", "how", "tree", "description")))


def _cmd_fetch(args: argparse.Namespace) -> None:
    from .datasets import fetch

    print(fetch(args.name, base_url=args.mirror, protocol=args.protocol))


def _cmd_browse(args: argparse.Namespace) -> None:
    print(browse_text(args.paths, args.tree))


def _cmd_specs(args: argparse.Namespace) -> None:
    from .data.measure import compute_specs

    spec = compute_specs(
        args.paths,
        tree=args.tree,
        branches=args.branches,
        exclude=args.exclude,
        max_len=args.max_len,
        cut=args.cut,
        cache=not args.no_cache,
    )
    print(spec.summary())
    if args.out:
        print(f"saved {spec.save(args.out)}")


def stream_rate(stream, progress: bool = True) -> tuple[int, float]:
    """Stream every event once with a progress bar; return (events, events per second)."""
    from .data.progress import progress_bar

    start = time.perf_counter()
    n = 0
    with progress_bar(stream.n_events, "stream", enabled=progress) as bar:
        for _, _, y in stream.chunks():
            n += len(y)
            bar.update(len(y))
    return n, n / (time.perf_counter() - start)


def _cmd_demo(args: argparse.Namespace) -> None:
    from .data.stream import DataStream
    from .datasets import make_tth

    out = Path(args.out)
    print(f"== 1. writing the synthetic ttH dataset to {out / 'data'}")
    files = make_tth(out / "data", args.events, args.events, n_files=2)
    print(browse_text(files[1][0], "Events"))
    print("\n== 2. feature summary")
    stream = DataStream(files)
    print(stream.spec.summary())
    print(f"\n== 3. streaming {stream}")
    n, rate = stream_rate(stream)
    print(f"streamed {n} events at {rate:,.0f} events/s")
    print(f"\n== 4. training the default MLP for {args.epochs} epochs")
    from .train.trainer import Trainer

    trainer = Trainer(stream, epochs=args.epochs)
    trainer.fit(live_plot=True, progress=True)
    result = trainer.evaluate()
    print(f"validation AUC {result['auc']:.3f}, accuracy {result['accuracy']:.3f}")
    trainer.plot_history().savefig(out / "loss.png", dpi=100)
    trainer.plot_roc().savefig(out / "roc.png", dpi=100)
    bundle = trainer.export(out / "tth")
    print(f"wrote {out / 'loss.png'}, {out / 'roc.png'} and the TFaaS bundle {bundle}")
    _demo_serving(trainer, stream, out)
    stream.close()


def _demo_serving(trainer, stream, out: Path) -> None:
    """Demo step 5: a local TFaaS server, push the bundle, served next to local predictions."""
    import numpy as np

    from .tfaas import TFaaSClient, serve_in_background

    print("\n== 5. serving: a local TFaaS server, push the model, predict over HTTP")
    with serve_in_background(out / "models") as server:
        client = TFaaSClient(server.url)
        name = client.upload(trainer, name="tth")
        print(f"server {server.url} serves {client.models()}")
        x, _, y = stream.head(1000, "validation")
        rows = np.concatenate([np.flatnonzero(y == label)[:4] for label in (0, 1)])
        x, y = x[rows], y[rows]
        served = np.asarray(client.predict(name, x)).reshape(len(x), -1)[:, -1]
        local = np.asarray(trainer.predict(x)).reshape(len(x), -1)[:, -1]
        print(f"{'label':>5}  {'served':>8}  {'local':>8}")
        for label, a, b in zip(y, served, local, strict=True):
            print(f"{int(label):>5}  {a:8.5f}  {b:8.5f}")
        print(f"largest difference served vs local: {np.max(np.abs(served - local)):.2e}")


def _cmd_train(args: argparse.Namespace) -> None:
    from .train.mlaas_params import MLaaSParams, ParamsError, load_mlaas_params
    from .train.workflow import check_save_path, cli_errors, report_training, train_from_params

    with cli_errors():
        check_save_path(args.save)
        params = load_mlaas_params(args.params) if args.params else MLaaSParams()
        given = {k: v for k, v in vars(args).items() if v is not None}
        if args.label:
            sources = args.files
        elif args.signal and args.background:
            sources = {1: args.signal, 0: args.background}
        else:
            msg = "give --signal and --background files, or --files with --label BRANCH"
            raise ParamsError(msg)
        trainer = train_from_params(
            sources,
            params,
            label=args.label,
            overrides={k: given[k] for k in _STREAM_FLAGS if k in given},
            epochs=given.get("epochs"),
            model=args.model,
        )
        report_training(trainer, save=args.save, out=args.out, name=args.name)


_STREAM_FLAGS = ("tree", "branches", "cut", "max_len", "chunk_size", "batch_size")


def _token(args: argparse.Namespace) -> str | None:
    import os

    return args.token or os.environ.get("MLAAS4HEP_NB_TOKEN") or None


def _cmd_serve(args: argparse.Namespace) -> None:
    from .tfaas.server.run import serve

    token = _token(args)
    if args.token_all and not token:
        print("mlaas4hep-nb: error: --token-all needs --token", file=sys.stderr)
        raise SystemExit(2)
    serve(
        args.model_dir,
        args.host,
        args.port,
        grpc_port=args.grpc_port,
        token=token,
        token_all=args.token_all,
        workers=args.workers,
        max_upload=args.max_upload,
    )


def _cmd_push(args: argparse.Namespace) -> None:
    from .tfaas.client import TFaaSClient

    name = TFaaSClient(args.url, token=_token(args)).upload(args.bundle, name=args.name)
    print(f"pushed {args.bundle} to {args.url} as {name!r}")


def _cmd_predict(args: argparse.Namespace) -> None:
    import json

    from .tfaas.client import TFaaSClient

    data = json.loads(Path(args.file).read_text())
    if isinstance(data, dict):
        data = data.get("events", data.get("values"))
    client = TFaaSClient(args.url, token=_token(args), upstream=args.upstream or None)
    if isinstance(data, list) and data and all(isinstance(e, dict) for e in data):
        out = client.predict_raw(args.name, data)
    else:
        out = client.predict(args.name, data)
    print(json.dumps(out.tolist()))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlaas4hep-nb",
        description="Machine Learning as a Service for HEP: browse, stream, train, serve.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-data", help="write the synthetic ttH (signal) / ttbar dataset")
    p.add_argument("out", help="output folder")
    p.add_argument("--signal", type=int, default=50_000)
    p.add_argument("--background", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fmt", choices=("TTree", "RNTuple"), default="TTree")
    p.add_argument("--files", type=int, default=1, help="files per class")
    p.set_defaults(run=_cmd_make_data)

    p = sub.add_parser("datasets", help="list the real public HEP files that fetch knows")
    p.set_defaults(run=_cmd_datasets)

    p = sub.add_parser("fetch", help="download a registered file (print its path) or its URL")
    p.add_argument("name", help="a name from 'mlaas4hep-nb datasets'")
    p.add_argument("--protocol", choices=("https", "root"), default="https", help="streamed: how")
    p.add_argument("--mirror", help="base URL of a mirror ($MLAAS4HEP_DATA_URL)")
    p.set_defaults(run=_cmd_fetch)

    p = sub.add_parser("browse", help="list trees and branches of ROOT files")
    p.add_argument("paths", nargs="+", help="files, globs or root:// / https:// URLs")
    p.add_argument("--tree", help="show the branches of this tree only")
    p.set_defaults(run=_cmd_browse)

    p = sub.add_parser("specs", help="compute the feature spec (pad lengths, ranges)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--tree", default="Events")
    p.add_argument("--branches", nargs="+", help="names or glob patterns")
    p.add_argument("--exclude", nargs="*", default=["run", "event", "luminosityBlock"])
    p.add_argument("--max-len", type=int, help="cap on jagged pad lengths")
    p.add_argument("--cut", help="uproot cut expression")
    p.add_argument("--out", help="write the spec as JSON here")
    p.add_argument("--no-cache", action="store_true")
    p.set_defaults(run=_cmd_specs)

    p = sub.add_parser("train", help="train a model on ROOT files and export a TFaaS bundle")
    p.add_argument("--signal", nargs="+", help="signal (label 1) files, globs or URLs")
    p.add_argument("--background", nargs="+", help="background (label 0) files")
    p.add_argument("--files", nargs="+", help="files whose --label branch holds the class")
    p.add_argument("--label", help="branch holding the class 0..K-1 (with --files)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--name", help="model name in params.json (default: the folder's name)")
    p.add_argument("--params", help="MLaaS4HEP params.json (nevts, chunk_size, epochs, ...)")
    p.add_argument("--model", help="a .py file defining model(idim); default: the built-in MLP")
    p.add_argument("--epochs", type=int)
    p.add_argument("--tree")
    p.add_argument("--branches", nargs="+", help="names or glob patterns")
    p.add_argument("--cut", help="uproot cut expression")
    p.add_argument("--max-len", type=int, help="cap on jagged pad lengths")
    p.add_argument("--chunk-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--save", help="also write the Keras model here (.keras)")
    p.set_defaults(run=_cmd_train)

    from .train.workflow import add_workflow_parser

    add_workflow_parser(sub)  # MLaaS4HEP's recipe: --files=files.txt --labels=labels.txt ...

    p = sub.add_parser("serve", help="serve TFaaS bundles over HTTP (TFaaS-compatible)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8083)
    p.add_argument(
        "--grpc-port",
        type=int,
        help="also serve gRPC here: KServe v2 (Triton's service) and TF Serving's Predict",
    )
    p.add_argument("--model-dir", default="models", help="where uploaded models persist")
    p.add_argument("--token", help="bearer token for uploads and deletes ($MLAAS4HEP_NB_TOKEN)")
    p.add_argument("--token-all", action="store_true", help="require the token on every route")
    p.add_argument("--workers", type=int, default=1, help="server processes")
    p.add_argument("--max-upload", type=int, default=512 * 1024 * 1024, help="bytes")
    p.set_defaults(run=_cmd_serve)

    p = sub.add_parser("push", help="upload a bundle (folder or tarball) to a TFaaS server")
    p.add_argument("bundle", help="bundle folder or .tar.gz")
    p.add_argument("--url", required=True, help="the TFaaS server, e.g. http://localhost:8083")
    p.add_argument("--name", help="model name (default: the bundle's)")
    p.add_argument("--token", help="bearer token ($MLAAS4HEP_NB_TOKEN)")
    p.set_defaults(run=_cmd_push)

    p = sub.add_parser("predict", help="predictions of a served model for rows or raw events")
    p.add_argument("file", help="JSON: a list of rows, one row, or a list of raw events")
    p.add_argument("--url", required=True)
    p.add_argument("--name", required=True, help="the served model")
    p.add_argument("--token", help="bearer token ($MLAAS4HEP_NB_TOKEN)")
    p.add_argument("--upstream", action="store_true", help="one request per row (upstream)")
    p.set_defaults(run=_cmd_predict)

    p = sub.add_parser("demo", help="run the whole job end to end on generated data")
    p.add_argument("--out", default="demo-output")
    p.add_argument("--events", type=int, default=50_000, help="events per class")
    p.add_argument("--epochs", type=int, default=5, help="training epochs")
    p.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlaas4hep-nb`` console script.

    Bad input (a file, tree or branch at fault, or a bad value such as
    ``--max-len -1``) ends in one ``mlaas4hep-nb: error: ...`` line and exit
    code 2. A reader that closes the pipe early (``| head``) ends the command
    quietly with 141, as a command killed by SIGPIPE.
    """
    from .errors import SourceError
    from .tfaas.errors import TFaaSError

    args = _parser().parse_args(argv)
    try:
        args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except (SourceError, ValueError, TFaaSError) as err:
        print(f"mlaas4hep-nb: error: {err}", file=sys.stderr)
        return 2
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the flush at exit does not fail on the closed pipe."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
