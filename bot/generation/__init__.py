"""Text generation for the bot: models loaded, decoded in batches on a worker thread, hot-swapped.

The package's modules, each with one job (no module imports one listed after it):

- ``errors``: the failures callers see (``GenerationError`` and its kinds).
- ``kernels``: the CPU kernel (``_matvec.c``) and the one seam where it replaces ``F.linear``.
- ``gpt2``: GPT-2's forward pass for sampling, through that seam.
- ``loading``: picking the device, loading a model and tokenizer, the Hub reachability check.
- ``decoding``: sampling settings, the sampler and the decoding loop.
- ``worker``: ``Generator``, the worker thread with its queue, batching and hot swap.
- ``engine``: ``Engine``, what the bot needs from an engine (``Generator`` or ``VllmEngine``).
- ``vllm``: ``VllmEngine``, answers from vLLM servers (``THUMBTUNE_ENGINE=vllm``), imported where chosen.

The rest of the bot imports from here.
"""

from bot.generation.decoding import (
    SamplingParams,
    TransformersForward,
    decode,
    position_ids,
    sample,
    sample_top_k_top_p,
)
from bot.generation.engine import Engine, EngineState, ReplicaState
from bot.generation.errors import (
    EngineUnavailable,
    GenerationError,
    GenerationTimeout,
    GeneratorBusy,
    ModelLoadError,
)
from bot.generation.loading import LoadedModel, load_model, pick_device
from bot.generation.worker import Generation, Generator

__all__ = [
    "Engine",
    "EngineState",
    "EngineUnavailable",
    "Generation",
    "GenerationError",
    "GenerationTimeout",
    "Generator",
    "GeneratorBusy",
    "LoadedModel",
    "ModelLoadError",
    "ReplicaState",
    "SamplingParams",
    "TransformersForward",
    "decode",
    "load_model",
    "pick_device",
    "position_ids",
    "sample",
    "sample_top_k_top_p",
]
