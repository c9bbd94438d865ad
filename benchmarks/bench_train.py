"""Input pipeline efficiency of training: in-memory ``model.fit`` vs ``Trainer.fit`` on the stream.

Run: .venv/bin/python benchmarks/bench_train.py [--events 150000] [--batch-size 256]
                                                [--epochs 3] [--repeat 2]

Writes the synthetic ttH/ttbar dataset (``--events`` per class, two files
each), then trains the same default MLP (same seed, batch size, epochs) twice:

- in memory: the stream's train and validation rows read into numpy arrays
  beforehand (not timed), then ``model.fit(x, y, validation_data=...)``;
- streamed: ``Trainer.fit`` on the DataStream, which reads and converts the
  ROOT files once per epoch (validation rows from the same read).

Both include validation in each epoch's time. Epoch 1 (graph tracing) is
left out; the figure is the median epoch time of in-memory over streamed
(1.0: streaming costs nothing; target >= 0.9).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import mlaas4hep_nb as mn
from mlaas4hep_nb.train.models import compile_model, default_model, inspect_model


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000, help="events per class")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--progress", action="store_true", help="show the Trainer's bars")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        start = time.perf_counter()
        files = mn.datasets.make_tth(tmp, args.events, args.events, n_files=2)
        print(f"wrote {2 * args.events} events in {time.perf_counter() - start:.1f} s")
        stream = mn.DataStream(
            files, chunk_size=args.chunk_size, batch_size=args.batch_size, progress=False
        )
        train, validation = read_arrays(stream)
        print(
            f"{stream.n_features} features, {len(train[2])} train / {len(validation[2])} "
            f"validation events, batch {args.batch_size}, {args.epochs} epochs x {args.repeat}"
        )
        memory, streaming = EpochTimer(), EpochTimer()
        for _ in range(args.repeat):  # alternate, so that both see the same machine load
            timer, auc_mem = in_memory(stream, train, validation, args.epochs)
            memory.times += timer.times[1:]
            memory.cpu += timer.cpu[1:]
            timer, auc_stream = streamed(stream, args.epochs, args.progress)
            streaming.times += timer.times[1:]
            streaming.cpu += timer.cpu[1:]
        stream.close()

    median = statistics.median
    for what, timer, auc in (
        ("in-memory model.fit", memory, auc_mem),
        ("Trainer.fit, stream", streaming, auc_stream),
    ):
        print(
            f"{what}: {median(timer.times):.2f} s/epoch (min {min(timer.times):.2f}), "
            f"CPU {median(timer.cpu):.2f} s/epoch, val AUC {auc:.3f}"
        )
    efficiency = median(memory.times) / median(streaming.times)
    best = min(memory.times) / min(streaming.times)
    print(
        f"input pipeline efficiency: {efficiency:.2f} (medians; {best:.2f} from the fastest "
        "epochs)  target >= 0.9"
    )
    print("reproduce: .venv/bin/python benchmarks/bench_train.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
