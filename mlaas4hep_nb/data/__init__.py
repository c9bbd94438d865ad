"""Layer 1, data streaming: ROOT files (local, ``root://``, ``https://``) to float32 chunks.

It imports neither TensorFlow nor matplotlib (``tf`` is the one exception,
imported on first use by the adapters). The path of the data, module by module::

    paths        file names, globs, redirectors, identities (size, mtime)
    rootio       open a TTree or RNTuple, its columns and clusters (uproot)
    handles      OpenFiles: files kept open for a stream's life, lent to one thread at a time
    expressions  aliases and cuts as uproot expressions
    sources      list trees and branches, preview a branch (mn.list_trees, ...)
    scan         scan files once (FileMeta), pick branches by names and globs
    branch_groups  group and filter thousands of branch names (the Browser's model)
    spec         FeatureSpec and BranchSpec: what each branch becomes (JSON)
    measure      compute_specs: one vectorised statistics pass, cached by fingerprint
    memory       large arrays mapped from the OS, returned to it when freed
    convert      awkward arrays to X, mask (padding, normalisation), in row blocks
    plan         cluster-aligned units of at most chunk_size, mixing, the train/validation split
    reader       read_passing (the one read-then-cut, retried) and UnitReader
    readahead    ReadAhead: units read ahead of the chunks, bounded in count and bytes
    cache        UnitCache: converted units kept across passes (memory, then mapped files)
    stream       DataStream: units read ahead on threads (or Dask), chunks, batches
    selection    Selection: labelled files, tree, branches, options (what the Browser hands on)
    tf           tf.data and Keras PyDataset adapters (imports TensorFlow)
    defaults     chunk and batch sizes, written once
    parallel, progress  ordered thread maps, progress bars

Arrows point one way: paths → rootio → handles → expressions → scan → spec →
memory → measure/convert → plan → reader → readahead → cache → stream → selection, tf.
"""
