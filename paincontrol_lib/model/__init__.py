"""The landmark-, text- and identity-conditioned diffusion model (ControlNet + FaceID tokens)."""
