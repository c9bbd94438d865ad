"""Layer 2, training: a Keras model fitted on a DataStream inside the kernel, exported for TFaaS.

::

    trainer       Trainer: fit (live plot, progress, stop), evaluate (AUC, ROC), export
    models        the default MLP, the MLaaS4HEP ``model(idim)`` convention, model checks
    feed          Encoder (rows to model inputs and targets), RowBuffer (validation rows)
    callbacks     progress bar, stop switch, validation after each epoch
    metrics       AUC, ROC, one-hot
    export        the serving graph written into the bundle (mask rule, signatures)
    mlaas_params, workflow  MLaaS4HEP's params.json and its training recipe (CLI ``workflow``)

It imports the data layer (``data.tf`` for batches) and ``bundle``; our
plotting (``plot``, ``liveplot``) only in the calls that plot.
"""
