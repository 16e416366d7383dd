"""Dense facial landmarks: MediaPipe 478-point FaceMesh on any image, the canonical frame, control
images and the landmark table.

Import what you need from the submodules (this package re-exports nothing, so a module that uses
one part depends on that part only):

- ``image``: image arrays and files (``as_rgb_uint8``, ``load_image``, ``upscale``);
- ``mesher``: ``FaceMesher`` (one face or every face of an image) and ``FaceLandmarks``;
- ``align``: the canonical frame (``canonical_landmarks``, ``Similarity``, ``align``,
  ``aligned_crop``); pure geometry on the AU->mesh model's neutral face, no MediaPipe;
- ``control``: control images drawn from a mesh (``render_control``) and landmark overlays;
- ``table``: the landmark table the landmark stage writes (``load_landmark_table``, row helpers,
  ``landmark_metrics``);
- ``batch``: meshing many files in worker processes (``run_batch``, ``detect_files``) and
  building the landmark table from records (``build_landmark_table``);
- ``face``: one meshed face (``Face``, ``read_face`` from a photo, ``face_of`` a table row).
"""
