"""Input pipeline efficiency of training: in-memory ``model.fit`` vs ``Trainer.fit`` on the stream.

Run: .venv/bin/python benchmarks/bench_train.py [--events 150000] [--batch-size 256]
                                                [--epochs 3] [--repeat 2]
                                                [--fit-events 50000,200000] [--fit-epochs 1,5]
                                                [--models mlp,dense16] [--fit-repeat 1]

Writes the synthetic ttH/ttbar dataset (``--events`` per class, two files
each), then trains the same default MLP (same seed, batch size, epochs) twice:

- in memory: the stream's train and validation rows read into numpy arrays
  beforehand (not timed), then ``model.fit(x, y, validation_data=...)``;
- streamed: ``Trainer.fit`` on the DataStream, which reads and converts the
  ROOT files once per epoch (validation rows from the same read) without its
  cache (``cache=False``), or once in all with it.

Both include validation in each epoch's time. Epoch 1 (graph tracing) is
left out; the figure is the median epoch time of in-memory over streamed
(1.0: streaming costs nothing; target >= 0.9).

Then the whole fit (``--fit-events`` per class, two files each; empty: skip):
for the default MLP (``mlp``) and a one-hidden-layer (16) model in the
``model(idim)`` convention (``dense16``), the wall time of the whole
``model.fit`` / ``Trainer.fit`` call for ``--fit-epochs`` epochs, in memory
(the arrays read beforehand, not timed) and streamed: without the cache,
with it from a fresh stream ("cold": its first epoch reads the files) and
with it already filled ("warm": a second Trainer on the same stream). Each
line gives the time from ``fit()`` to the first batch and to the end of the
first epoch, the CPU time, and the peak RSS while fitting (sampled every 10
ms; in this one process, so it includes the in-memory arrays). All runs are
printed: the machine is noisy. Targets with the cache: the 5-epoch fit >=
0.95 of in-memory, the 1-epoch fit >= 0.9.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import psutil

import mlaas4hep_nb as mn
from mlaas4hep_nb.train.feed import Encoder
from mlaas4hep_nb.train.models import compile_model, default_model, inspect_model, resolve_model


class EpochTimer(keras.callbacks.Callback):
    """Wall and process CPU seconds of each epoch, validation included."""

    def __init__(self):
        super().__init__()
        self.times = []
        self.cpu = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._cpu = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)
        self.cpu.append(time.process_time() - self._cpu)


class FitClock(keras.callbacks.Callback):
    """Seconds from ``start`` (set just before ``fit``) to the first batch and first epoch end."""

    def __init__(self):
        super().__init__()
        self.start = 0.0
        self.first_batch: float | None = None
        self.first_epoch: float | None = None

    def on_train_batch_end(self, batch, logs=None):
        if self.first_batch is None:
            self.first_batch = time.perf_counter() - self.start

    def on_epoch_end(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = time.perf_counter() - self.start


class PeakRSS:
    """The peak resident memory of this process while the ``with`` block runs (10 ms samples)."""

    def __init__(self):
        self.process = psutil.Process()
        self.peak = 0
        self._done = threading.Event()

    def __enter__(self):
        self.start = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def dense16(idim):
    """One hidden layer of 16, compiled: the MLaaS4HEP ``model(idim)`` convention."""
    inputs = keras.Input((idim,), name="inputs")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    output = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(inputs, output)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return model


MODELS = {"mlp": None, "dense16": dense16}


def read_arrays(stream):
    parts = list(stream.split_chunks())
    train = [np.concatenate(a) for a in zip(*(p[0] for p in parts), strict=True)]
    validation = [np.concatenate(a) for a in zip(*(p[1] for p in parts), strict=True)]
    return train, validation


def in_memory(stream, train, validation, epochs):
    keras.utils.set_random_seed(stream.seed)
    model = default_model(stream.n_features, stream.n_classes)
    compile_model(model, inspect_model(model, stream.n_features, 2), "adam", 1e-3)
    (x, mask, y), (xv, maskv, yv) = train, validation
    timer = EpochTimer()
    history = model.fit(
        [x, mask.astype(np.float32)],
        y[:, None],
        validation_data=([xv, maskv.astype(np.float32)], yv[:, None]),
        batch_size=stream.batch_size,
        epochs=epochs,
        verbose=0,
        callbacks=[timer],
    )
    return timer, history.history["val_auc"][-1]


def streamed(stream, epochs, progress):
    timer = EpochTimer()
    trainer = mn.Trainer(stream, epochs=epochs, callbacks=[timer])
    history = trainer.fit(live_plot=False, progress=progress)
    return timer, history.history["val_auc"][-1]


def epoch_efficiency(args) -> None:
    """The median epoch (epoch 1 left out) in memory over streamed, with and without the cache."""
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        start = time.perf_counter()
        files = mn.datasets.make_tth(tmp, args.events, args.events, n_files=2)
        print(f"wrote {2 * args.events} events in {time.perf_counter() - start:.1f} s")
        settings = {"chunk_size": args.chunk_size, "batch_size": args.batch_size, "progress": False}
        streams = {
            "stream": mn.DataStream(files, cache=False, **settings),
            "stream with cache": mn.DataStream(files, cache="auto", **settings),
        }
        stream = streams["stream"]
        train, validation = read_arrays(stream)
        print(
            f"{stream.n_features} features, {len(train[2])} train / {len(validation[2])} "
            f"validation events, batch {args.batch_size}, {args.epochs} epochs x {args.repeat}"
        )
        memory = EpochTimer()
        timers = {name: EpochTimer() for name in streams}
        aucs = {}
        for _ in range(args.repeat):  # alternate, so that all see the same machine load
            timer, aucs["memory"] = in_memory(stream, train, validation, args.epochs)
            memory.times += timer.times[1:]
            memory.cpu += timer.cpu[1:]
            for name, each in streams.items():
                timer, aucs[name] = streamed(each, args.epochs, args.progress)
                timers[name].times += timer.times[1:]
                timers[name].cpu += timer.cpu[1:]
        for each in streams.values():
            each.close()

    median = statistics.median
    rows = [("in-memory model.fit", memory, aucs["memory"])]
    rows += [(f"Trainer.fit, {name}", timers[name], aucs[name]) for name in streams]
    for what, timer, auc in rows:
        print(
            f"{what}: {median(timer.times):.2f} s/epoch (min {min(timer.times):.2f}), "
            f"CPU {median(timer.cpu):.2f} s/epoch, val AUC {auc:.3f}"
        )
    for name, label in (("stream", ""), ("stream with cache", " with cache")):
        timer = timers[name]
        efficiency = median(memory.times) / median(timer.times)
        best = min(memory.times) / min(timer.times)
        print(
            f"input pipeline efficiency{label}: {efficiency:.2f} (medians; {best:.2f} from the "
            "fastest epochs)  target >= 0.9"
        )


def _run(fit, clock: FitClock) -> dict:
    """Time ``fit()`` (wall, CPU) with its clock and peak RSS."""
    with PeakRSS() as rss:
        cpu = time.process_time()
        clock.start = time.perf_counter()
        history = fit()
        wall = time.perf_counter() - clock.start
        cpu = time.process_time() - cpu
    return {
        "fit": wall,
        "cpu": cpu,
        "first_batch": clock.first_batch,
        "first_epoch": clock.first_epoch,
        "rss": rss.peak / 2**20,
        "rss_growth": (rss.peak - rss.start) / 2**20,
        "auc": history.history["val_auc"][-1],
    }


def fit_in_memory(stream, model, arrays, epochs) -> dict:
    keras.utils.set_random_seed(stream.seed)
    built = resolve_model(model, stream.n_features, stream.n_classes)
    layout = inspect_model(built, stream.n_features, stream.n_classes, stream.features)
    compile_model(built, layout, "adam", 1e-3)  # as the Trainer does: the same metrics
    encoder = Encoder(layout, stream.n_features)
    (x, mask, y), (xv, maskv, yv) = arrays
    inputs, targets = encoder(x, mask, y)
    validation = encoder(xv, maskv, yv)
    clock = FitClock()

    def fit():
        return built.fit(
            inputs,
            targets,
            validation_data=validation,
            batch_size=stream.batch_size,
            epochs=epochs,
            verbose=0,
            callbacks=[clock],
        )

    return _run(fit, clock)


def fit_streamed(stream, model, epochs) -> dict:
    clock = FitClock()
    setup = time.perf_counter()
    trainer = mn.Trainer(stream, model=model, epochs=epochs, callbacks=[clock])
    setup = time.perf_counter() - setup
    result = _run(lambda: trainer.fit(live_plot=False, progress=False), clock)
    result["setup"] = setup
    cache = stream.report["cache"]
    result["cache"] = (
        "off"
        if cache["mode"] is None
        else f"{cache['mode']}: {cache['hits']} units from cache, {cache['reads']} read"
    )
    return result


def _line(variant: str, run: dict, reference: float | None) -> str:
    ratio = f" ratio {reference / run['fit']:.2f}" if reference else ""
    setup = f", Trainer() {run['setup']:.2f} s" if "setup" in run else ""
    cache = f" [{run['cache']}]" if "cache" in run else ""
    return (
        f"    {variant:<13} fit {run['fit']:6.2f} s{ratio:>11}  CPU {run['cpu']:6.2f} s  "
        f"first batch {run['first_batch']:.2f} s  epoch 1 ends {run['first_epoch']:.2f} s  "
        f"peak RSS {run['rss']:.0f} MiB (+{run['rss_growth']:.0f}){setup}  "
        f"val AUC {run['auc']:.3f}{cache}"
    )


def whole_fit(args) -> None:
    """Whole-fit times of both models, in memory and streamed (cache off, cold, warm)."""
    sizes = [int(n) for n in args.fit_events.split(",") if n.strip()]
    epochs_list = [int(n) for n in args.fit_epochs.split(",") if n.strip()]
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    summary: dict[tuple, list[float]] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-fit-") as tmp:
            files = mn.datasets.make_tth(tmp, size, size, n_files=2)
            settings = {
                "chunk_size": args.chunk_size,
                "batch_size": args.batch_size,
                "progress": False,
            }
            reader = mn.DataStream(files, cache=False, **settings)
            arrays = read_arrays(reader)
            print(
                f"\nwhole fit, 2 x {size} events ({len(arrays[0][2])} train / "
                f"{len(arrays[1][2])} validation, {reader.n_features} features), batch "
                f"{args.batch_size}, chunk {args.chunk_size}"
            )
            for name in models:
                model = MODELS[name]
                for epochs in epochs_list:
                    for repeat in range(args.fit_repeat):
                        print(f"  {name}, {epochs} epoch(s), run {repeat + 1}")
                        memory = fit_in_memory(reader, model, arrays, epochs)
                        print(_line("in-memory", memory, None))
                        off = fit_streamed(
                            mn.DataStream(files, cache=False, **settings), model, epochs
                        )
                        print(_line("cache off", off, memory["fit"]))
                        stream = mn.DataStream(files, cache="auto", **settings)
                        cold = fit_streamed(stream, model, epochs)
                        print(_line("cache cold", cold, memory["fit"]))
                        warm = fit_streamed(stream, model, epochs)
                        print(_line("cache warm", warm, memory["fit"]))
                        stream.close()
                        for variant, run in (("off", off), ("cold", cold), ("warm", warm)):
                            key = (size, name, epochs, variant)
                            summary.setdefault(key, []).append(memory["fit"] / run["fit"])
            reader.close()
    if summary:
        print(
            "\nin-memory fit time / streamed fit time (every run; target with the cache: "
            ">= 0.95 for 5 epochs, >= 0.9 for 1)"
        )
        for (size, name, epochs, variant), ratios in summary.items():
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"  2 x {size:<7} {name:<8} {epochs} epoch(s)  {variant:<5} {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000, help="events per class")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--progress", action="store_true", help="show the Trainer's bars")
    parser.add_argument(
        "--fit-events", default="50000,200000", help="events per class of the whole-fit runs"
    )
    parser.add_argument("--fit-epochs", default="1,5", help="epochs of the whole-fit runs")
    parser.add_argument("--models", default="mlp,dense16", help="whole-fit models: mlp, dense16")
    parser.add_argument("--fit-repeat", type=int, default=1, help="runs of each whole fit")
    args = parser.parse_args()
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}: choose from {list(MODELS)}")

    if args.repeat > 0:
        epoch_efficiency(args)
    whole_fit(args)
    print("reproduce: .venv/bin/python benchmarks/bench_train.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
