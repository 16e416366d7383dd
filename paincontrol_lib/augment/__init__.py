"""Downstream pain detection and the data-scarcity augmentation experiment (stage 05).

The paper's practical claim: synthetic pain faces do not help a pain detector when real pain
data is plentiful, but do when it is very scarce. The experiment here:

- **Subject-independent**: detectors train on training-split people and are scored on the
  held-out (test-split) people, who were never seen by the generator either. Synthetic images
  transfer training people's expressions onto *new* identities (fresh SynthPain people, or
  training people's neutral faces on real data), never onto a test person.
  :func:`check_no_leakage` enforces this on every fit.
- **Scarcity**: every training person keeps their no-pain frames (no-pain data is cheap); the
  pain frames (PSPI > 0) of only ``k`` people are kept. For each seed the people are taken in a
  seeded order, so the levels are nested.
- **Arms**: ``real`` only; ``real`` + synthetic from ``paincontrol`` or the ``warp`` baseline;
  ``classic`` augmentation (flips, small affine and photometric jitter of the same real frames).
  Each synthetic "pair" is one available pain sequence put on one new identity (its neutral
  frame and ``pain_frames`` frames spread over its pain intensities); each cell adds the same
  number of pairs (``pairs_per_cell``), spread evenly over the available sequences, so the
  synthetic set is large relative to the real pain when that is scarce and small when it is not.
- **Detectors**: a small CNN on 64 px aligned crops and a logistic/ridge model on aligned
  MediaPipe mesh features; both predict pain (PSPI > 0) and PSPI. Every image, real or
  synthetic, reaches both detectors through the same path (64 px crop -> features).

Modules (import from them; this file imports nothing, so each stage depends only on the parts it
runs): :mod:`.cells` (splits, leakage checks, the scarcity plan), :mod:`.bank` (detector
inputs, classic augmentation, new identities, the synthetic bank, mesh features),
:mod:`.detectors` (CNN and mesh detectors, scores), :mod:`.sweep` (every fit of the plan) and
:mod:`.statistics` (summaries, paired tests, the mixed model, the claim, ``augment.json``).
"""
