"""One module per notebook: each is the step of the paper that its notebook walks through.

=================  ==============================  ==========================
notebook           stage module                    metrics
=================  ==============================  ==========================
00_synthpain       ``stages.synthesize``           ``synthpain.json``
01_landmarks       ``stages.landmarks``            ``landmarks.json``
02_train           ``stages.train``                ``train.json``
03_transfer        ``stages.transfer``             ``transfer.json``
04_au_identity     ``stages.evaluate``             ``eval.json``
05_augmentation    ``stages.augment``              ``augment.json``
06_realism_study   ``stages.study``                ``study.json``
=================  ==============================  ==========================

Each module has one entry point, ``run(...)``, that takes its ``params.yaml`` sections and
folders, writes its outputs and metrics, and returns a result with the metrics and what the
figures need; small ``*_figure`` functions draw (and save) the notebook's figures. Stage modules
stand on the core modules only: they never import each other (tests/test_layering.py).
"""
