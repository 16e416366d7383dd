"""The AU *readers*: what reads FACS action units off a face (``backends``: the mesh reader,
py-feat and the per-AU choice; ``learned``: a ridge on MediaPipe meshes; ``pixels``: a CNN on
the aligned crop). What *draws* AUs is elsewhere: ``au_to_mesh`` (the renderer's AU->mesh model)
and ``au_basis`` (that model in the canonical frame, and its inverse)."""
