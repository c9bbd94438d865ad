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
from mlaas4hep_nb.models import compile_model, default_model, inspect_model


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


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
    return timer.times, history.history["val_auc"][-1]


def streamed(stream, epochs, progress):
    timer = EpochTimer()
    trainer = mn.Trainer(stream, epochs=epochs, callbacks=[timer])
    history = trainer.fit(live_plot=False, progress=progress)
    return timer.times, history.history["val_auc"][-1]


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
        memory_times, stream_times = [], []
        for _ in range(args.repeat):
            times, auc_mem = in_memory(stream, train, validation, args.epochs)
            memory_times += times[1:]
            times, auc_stream = streamed(stream, args.epochs, args.progress)
            stream_times += times[1:]
        stream.close()

    t_memory, t_stream = statistics.median(memory_times), statistics.median(stream_times)
    print(f"in-memory model.fit : {t_memory:.2f} s/epoch  (val AUC {auc_mem:.3f})")
    print(f"Trainer.fit, stream : {t_stream:.2f} s/epoch  (val AUC {auc_stream:.3f})")
    print(f"input pipeline efficiency: {t_memory / t_stream:.2f}  (target >= 0.9)")
    print("reproduce: .venv/bin/python benchmarks/bench_train.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
