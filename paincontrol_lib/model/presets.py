"""Build, save and load PainControl models: UNet + ControlNet + text encoder + identity adapter.

Two presets through one code path:

- ``tiny`` (default, CPU): every part built from a config with random weights; pixel space
  (a one-block ``AutoencoderKL`` placeholder gives the stock pipeline a scale factor of 1); text
  through a CLIP text model over the project's own vocabulary; identity from 128-d dlib
  embeddings.
- ``sd15`` (GPU): a user-given Stable Diffusion 1.5 folder or hub id (``pretrained``), an
  optional ControlNet to start from (``controlnet``, e.g. a MediaPipe-face ControlNet), else
  ``ControlNetModel.from_unet``; ArcFace 512-d identity when insightface weights are present.

Identity enters as IP-Adapter-FaceID tokens: a small MLP maps the embedding to 4 extra
cross-attention tokens and new key/value projections attend to them (diffusers' own
``IPAdapterFaceIDImageProjection`` and ``IPAdapterAttnProcessor``), so the stock
``StableDiffusionControlNetPipeline`` samples with ``ip_adapter_image_embeds``. The adapter is
saved separately because ``UNet2DConditionModel.save_pretrained`` drops its weights.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

IDENTITY_TOKENS = 4  # fixed by diffusers' FaceID attention processors
ADAPTER_DIR = "identity_adapter"
ADAPTER_FILE = "ip_adapter.safetensors"
CONFIG_FILE = "paincontrol_model.json"


def checkpoint_domains(folder) -> list[str] | None:
    """What kinds of faces a checkpoint was trained on (``training.json: trained_on``; the
    shipped checkpoint's PROVENANCE.json: SynthPain), or None when its records do not say."""
    folder = Path(folder)
    if (folder / "PROVENANCE.json").is_file():
        return ["synthpain"]  # model/pretrain.py packs SynthPain renderings only
    record = folder / "training.json"
    if record.is_file():
        return json.loads(record.read_text()).get("trained_on")
    return None


SYNTHPAIN_ONLY_NOTE = (
    "note: {checkpoint} was trained on SynthPain renderings only: on a photograph it draws a "
    "SynthPain-style face and loses the person. For photographs use --method warp, or a "
    "checkpoint trained on photographs (profiles/sd15.yaml on your data, docs/real-data.md)"
)


@dataclass
class ModelConfig:
    preset: str = "tiny"
    resolution: int = 64
    patch_size: int = (
        2  # tiny: the UNet sees p x p pixel patches as channels (lossless, p^2 x cheaper)
    )
    block_out_channels: tuple[int, ...] = (48, 96, 96)
    layers_per_block: int = 1
    cross_attention_dim: int = 64
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    text_layers: int = 2
    text_heads: int = 2
    max_prompt_tokens: int = 64
    identity_dim: int = 128
    identity_backend: str = "dlib"
    prediction_type: str = "v_prediction"
    beta_schedule: str = "squaredcos_cap_v2"
    pretrained: str | None = None  # sd15: SD 1.5 folder or hub id
    controlnet: str | None = None  # sd15: ControlNet to start from
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.preset not in ("tiny", "sd15"):
            raise ValueError(f"unknown model preset {self.preset!r}: choose 'tiny' or 'sd15'")
        if self.preset == "sd15" and not self.pretrained:
            raise ValueError(
                "the sd15 preset needs `pretrained`: a Stable Diffusion 1.5 folder or hub id"
            )
        if self.resolution % 8:
            raise ValueError(f"resolution {self.resolution} must be a multiple of 8")
        if self.patch_size not in (1, 2, 4):
            raise ValueError(f"patch_size {self.patch_size} must be 1, 2 or 4")
        self.block_out_channels = tuple(self.block_out_channels)


@dataclass
class PainControlModel:
    config: ModelConfig
    unet: torch.nn.Module
    controlnet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    vae: torch.nn.Module
    scheduler: object

    # -- identity adapter -------------------------------------------------------------------
    def identity_parameters(self) -> list[torch.nn.Parameter]:
        params = list(self.unet.encoder_hid_proj.parameters())
        for name, proc in self.unet.attn_processors.items():
            if name.endswith("attn2.processor"):
                params += list(proc.parameters())
        return params

    def fresh_identity_adapter(self, backend: str, seed: int = 0) -> None:
        """A new, untrained identity adapter reading ``backend``'s embeddings in place of the
        current one: tokens learnt from one encoder's embeddings mean nothing in another's space,
        and an adapter trained from a fresh start does not depend on which adapter it replaced."""
        self.config.identity_backend = backend
        self.config.identity_dim = identity_dim(backend)
        _attach_identity_adapter(self.unet, self.config.identity_dim, seed)

    def adapter_state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """The identity adapter in the original IP-Adapter-FaceID layout."""
        proj = self.unet.encoder_hid_proj.image_projection_layers[0].state_dict()
        image_proj = {
            k.replace("ff.net.0.proj", "proj.0").replace("ff.net.2", "proj.2"): v.detach().clone()
            for k, v in proj.items()
        }
        ip, key = {}, 1
        for name, proc in self.unet.attn_processors.items():
            if name.endswith("attn2.processor"):
                ip[f"{key}.to_k_ip.weight"] = proc.to_k_ip[0].weight.detach().clone()
                ip[f"{key}.to_v_ip.weight"] = proc.to_v_ip[0].weight.detach().clone()
                key += 2
        return {"image_proj": image_proj, "ip_adapter": ip}

    # -- persistence --------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> Path:
        """Diffusers format: one sub-folder per part plus the adapter and our config."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with _expected_loading_messages_silenced():  # and transformers' "Writing model shards"
            self.unet.save_pretrained(folder / "unet")
            self.controlnet.save_pretrained(folder / "controlnet")
            self.text_encoder.save_pretrained(folder / "text_encoder")
            self.tokenizer.save_pretrained(folder / "tokenizer")
            self.vae.save_pretrained(folder / "vae")
            self.scheduler.save_pretrained(folder / "scheduler")
        flat = {
            f"{part}.{k}": v.contiguous()
            for part, sd in self.adapter_state_dict().items()
            for k, v in sd.items()
        }
        (folder / ADAPTER_DIR).mkdir(exist_ok=True)
        save_file(flat, str(folder / ADAPTER_DIR / ADAPTER_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> PainControlModel:
        from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
        from safetensors.torch import load_file
        from transformers import CLIPTextModel, CLIPTokenizer

        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a PainControl checkpoint ({CONFIG_FILE} missing); expected the "
                "folder written by `PainControlModel.save_pretrained` or a training checkpoint-N/"
            )
        config = ModelConfig(**json.loads(config_path.read_text()))
        with _expected_loading_messages_silenced():
            unet = UNet2DConditionModel.from_pretrained(folder / "unet")
            flat = load_file(str(folder / ADAPTER_DIR / ADAPTER_FILE))
            adapter = {"image_proj": {}, "ip_adapter": {}}
            for key, value in flat.items():
                part, _, name = key.partition(".")
                adapter[part][name] = value
            unet._load_ip_adapter_weights([adapter])
            return cls(
                config=config,
                unet=unet,
                controlnet=ControlNetModel.from_pretrained(folder / "controlnet"),
                text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder"),
                tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
                vae=AutoencoderKL.from_pretrained(folder / "vae"),
                scheduler=DDPMScheduler.from_pretrained(folder / "scheduler"),
            )

    # -- inference ----------------------------------------------------------------------------
    def pipeline(self, steps_scheduler: str = "ddim"):
        """The stock ``StableDiffusionControlNetPipeline`` over these parts."""
        from diffusers import DDIMScheduler, StableDiffusionControlNetPipeline

        # Pixel patches are pixel values: clipping the predicted clean image to [-1, 1] at each
        # step is valid there and removes out-of-range speckle (SD latents are not clipped).
        scheduler = DDIMScheduler.from_config(
            self.scheduler.config, timestep_spacing="trailing", clip_sample=self.pixel_space
        )
        pipe = StableDiffusionControlNetPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet,
            controlnet=self.controlnet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @property
    def pixel_space(self) -> bool:
        return self.config.preset == "tiny"

    def to_latent(self, images: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Images in [-1, 1] -> what the UNet diffuses: pixel patches (tiny) or VAE latents
        (a sample of the posterior, or its mode when ``deterministic``)."""
        if self.pixel_space:
            return torch.nn.functional.pixel_unshuffle(images, self.config.patch_size)
        posterior = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        latents = posterior.mode() if deterministic else posterior.sample()
        return latents.float() * self.vae.config.scaling_factor

    def from_latent(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of ``to_latent`` (tiny: exact)."""
        if self.pixel_space:
            return torch.nn.functional.pixel_shuffle(latents, self.config.patch_size)
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample


def identity_dim(backend: str) -> int:
    """Length of ``backend``'s embeddings (ArcFace 512, the others 128)."""
    return 512 if backend == "arcface" else 128


def _adapter_init(unet, identity_dim: int, cross_dim: int, generator: torch.Generator) -> dict:
    """A fresh FaceID adapter: small random projection; key/value copies of the text ones
    (IP-Adapter's own initialisation, so identity tokens start out like text tokens)."""
    hidden = identity_dim * 2

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.02

    image_proj = {
        "proj.0.weight": rand(hidden, identity_dim),
        "proj.0.bias": torch.zeros(hidden),
        "proj.2.weight": rand(cross_dim * IDENTITY_TOKENS, hidden),
        "proj.2.bias": torch.zeros(cross_dim * IDENTITY_TOKENS),
        "norm.weight": torch.ones(cross_dim),
        "norm.bias": torch.zeros(cross_dim),
    }
    ip, key = {}, 1
    modules = dict(unet.named_modules())
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            attn = modules[name.rsplit(".processor", 1)[0]]
            ip[f"{key}.to_k_ip.weight"] = attn.to_k.weight.detach().clone()
            ip[f"{key}.to_v_ip.weight"] = attn.to_v.weight.detach().clone()
            key += 2
    return {"image_proj": image_proj, "ip_adapter": ip}


def build_model(config: ModelConfig, seed: int = 0) -> PainControlModel:
    """A fresh model for ``config`` (random ``tiny``, or ``sd15`` from the user's weights)."""
    torch.manual_seed(seed)
    parts = _tiny_parts(config) if config.preset == "tiny" else _sd15_parts(config)
    # The ControlNet is copied from the UNet *before* the adapter is attached (FACTS.md).
    _attach_identity_adapter(parts["unet"], config.identity_dim, seed)
    return PainControlModel(config, **parts)


def _tiny_parts(config: ModelConfig) -> dict:
    """Every part built from ``config`` with random weights, in a fixed order (the seeded random
    stream runs through them): text encoder, UNet, placeholder VAE, ControlNet, scheduler."""
    from diffusers import ControlNetModel, DDPMScheduler

    tokenizer, text_encoder = _tiny_text_encoder(config)
    unet = _tiny_unet(config)
    levels = {1: 1, 2: 2, 4: 3}[config.patch_size]
    vae = _placeholder_vae(config.patch_size, levels)
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(16, 32, 96)[:levels]
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=False,
    )
    return dict(unet=unet, controlnet=controlnet, text_encoder=text_encoder,
                tokenizer=tokenizer, vae=vae, scheduler=scheduler)  # fmt: skip


def _tiny_text_encoder(config: ModelConfig):
    """The project's own tokenizer and a small random CLIP text model over its vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from paincontrol_lib.model.text import build_tokenizer

    tokenizer = build_tokenizer(config.max_prompt_tokens)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.cross_attention_dim,
            intermediate_size=2 * config.cross_attention_dim,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            max_position_embeddings=config.max_prompt_tokens,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return tokenizer, text_encoder


def _tiny_unet(config: ModelConfig):
    """A random UNet on p x p pixel patches (``patch_size``) of the image."""
    from diffusers import UNet2DConditionModel

    n = len(config.block_out_channels)
    p = config.patch_size
    return UNet2DConditionModel(
        sample_size=config.resolution // p,
        in_channels=3 * p * p,
        out_channels=3 * p * p,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        # Cross-attention only at the lowest resolution: 2.5x faster on CPU (FACTS.md).
        down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
    )


def _placeholder_vae(p: int, levels: int):
    """Placeholder VAE, never run: it only tells the stock pipeline the latent grid is 1/p of
    the image (its scale factor is 2 ** (blocks - 1)); patches are (un)shuffled."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=(8,) * levels,
        latent_channels=3 * p * p,
        norm_num_groups=8,
    )


def _sd15_parts(config: ModelConfig) -> dict:
    """Stable Diffusion 1.5 parts from ``config.pretrained``; the ControlNet from
    ``config.controlnet`` or copied from the UNet."""
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    source = config.pretrained
    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet")
    text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
    vae = AutoencoderKL.from_pretrained(source, subfolder="vae")
    scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler")
    # The conditioning embedding downsamples the control image to the latent size: one
    # stride-2 level per halving of the VAE (SD 1.5: 8x -> SD's own (16, 32, 96, 256)).
    levels = len(vae.config.block_out_channels)
    controlnet = (
        ControlNetModel.from_pretrained(config.controlnet)
        if config.controlnet
        else ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=(16, 32, 96, 256)[:levels]
        )
    )
    return dict(unet=unet, controlnet=controlnet, text_encoder=text_encoder,
                tokenizer=tokenizer, vae=vae, scheduler=scheduler)  # fmt: skip


def _attach_identity_adapter(unet, identity_dim: int, seed: int) -> None:
    """A fresh FaceID adapter (``_adapter_init``, its own generator of ``seed``) loaded into
    ``unet``."""
    generator = torch.Generator().manual_seed(seed)
    with _expected_loading_messages_silenced():  # the loader's "kept in float32: []" note
        unet._load_ip_adapter_weights(
            [_adapter_init(unet, identity_dim, unet.config.cross_attention_dim, generator)]
        )


@contextlib.contextmanager
def _expected_loading_messages_silenced():
    """Loading a checkpoint prints three messages that are expected every time and read as
    faults: diffusers' "Some weights ... were not used ...: to_k_ip ..." (the identity adapter's
    weights are also in the UNet's saved state, where a plain UNet has no place for them; they are
    loaded from ``identity_adapter/`` right after), its "modules that should be kept in float32"
    note from the adapter loader, and transformers' "Loading weights" progress bar. Errors still
    show."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    before = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(before[0])
        transformers_logging.set_verbosity(before[1])
        transformers_logging.enable_progress_bar()
