"""Which weights to serve: ``--weights auto|pretrained|random|PATH|hf-hub:ORG/REPO[@REV]``.

- ``random``: seeded random initialisation (``--seed``); responses say ``"pretrained": false``;
- ``pretrained``: the variant's released checkpoint from the Hugging Face Hub (its repo is
  in :mod:`hyena_serve.variants`), through ``huggingface_hub``'s cache; fails with one line
  when it cannot be had;
- ``auto``: ``pretrained`` when the weights are cached or the Hub answers, otherwise random
  weights with a loud warning;
- ``PATH``: a weights file (``.safetensors``, ``.pth``/``.pt``/``.bin``) for ``--model``, or a
  training run folder (``runs/digits``) whose ``manifest.json`` names the model, its
  arguments, preprocessing and labels;
- ``hf-hub:ORG/REPO[@REVISION]``: ``model.safetensors`` (else ``pytorch_model.bin``) of any
  Hub repository, loaded into ``--model``.

The Hub client honours ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME``/``HF_HUB_CACHE``
and ``HF_TOKEN``. Resolution only finds and fingerprints the file (sha256); no torch here:
loading happens in :mod:`hyena_serve.artifact`. See docs/artifacts.md.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from hyena_serve import __version__
from hyena_serve.files import sha256_file
from hyena_serve.manifest import RUN_MANIFEST, Manifest, ManifestError, WeightsInfo, load_manifest

log = logging.getLogger(__name__)

HF_PREFIX = "hf-hub:"
KEYWORDS = ("auto", "pretrained", "random")
#: Files tried, in order, in a Hub repository given as ``hf-hub:ORG/REPO``.
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DEFAULT_REVISION = "main"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
HELP = ("auto | pretrained | random | PATH (weights file or training run folder) | hf-hub:ORG/REPO[@REVISION]")


class WeightsError(RuntimeError):
    """The requested weights cannot be had; the message is one line for the user."""


@dataclass(frozen=True)
class ResolvedWeights:
    """The weights to build: ``path`` (``None`` for random), their :class:`WeightsInfo`,
    whether they are trained, and the run manifest when ``PATH`` was a training run."""

    info: WeightsInfo
    pretrained: bool
    path: Path | None = None
    variant: str = ""
    run: Manifest | None = None


def parse_hub_spec(spec: str) -> tuple[str, str]:
    """``hf-hub:ORG/REPO[@REV]`` -> (``ORG/REPO``, revision)."""
    body = spec[len(HF_PREFIX):]
    repo, _, revision = body.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise WeightsError(f"--weights {spec!r}: expected hf-hub:ORG/REPO or hf-hub:ORG/REPO@REVISION")
    return repo, revision or DEFAULT_REVISION


def resolve_weights(spec: str, model: str, *, seed: int = 0, revision: str | None = None) -> ResolvedWeights:
    """Find the weights ``spec`` names for registry model ``model`` (see the module doc)."""
    spec = str(spec).strip()
    if spec == "random":
        return ResolvedWeights(WeightsInfo("random", seed=seed), pretrained=False, variant="random")
    if spec in ("pretrained", "auto"):
        from hyena_serve.variants import DEFAULT_CFGS, HF_HUB_FILENAME

        repo = DEFAULT_CFGS[model].hf_hub_id if model in DEFAULT_CFGS else ""
        try:
            if not repo:
                raise WeightsError(f"{model} has no released weights")
            return _from_hub(repo, revision or DEFAULT_REVISION, (HF_HUB_FILENAME,))
        except WeightsError as exc:
            if spec == "pretrained":
                raise
            log.warning("=" * 78)
            log.warning("NO PRETRAINED WEIGHTS: %s. Using RANDOM weights for %s (seed %d): predictions are "
                        "meaningless and every response says \"pretrained\": false. Use --weights PATH, "
                        "hf-hub:ORG/REPO, or a trained run (python -m hyena_serve.train; --weights runs/digits).",
                        exc, model, seed)
            log.warning("=" * 78)
            return ResolvedWeights(WeightsInfo("random", seed=seed), pretrained=False, variant="random")
    if spec.startswith(HF_PREFIX):
        repo, rev = parse_hub_spec(spec)
        return _from_hub(repo, revision or rev, HUB_WEIGHT_FILES)
    return _from_path(Path(spec))


def _from_path(path: Path) -> ResolvedWeights:
    if path.is_dir():
        try:
            run = load_manifest(path / RUN_MANIFEST)
        except ManifestError as exc:
            raise WeightsError(f"--weights {path}: a folder must be a training run with {RUN_MANIFEST} ({exc})") from None
        weights = path / run.weights.source.removeprefix("file:")
        if not weights.is_file():
            raise WeightsError(f"{path / RUN_MANIFEST} names weights {weights.name}, which do not exist")
        digest = sha256_file(weights)
        if run.weights.sha256 and digest != run.weights.sha256:
            raise WeightsError(f"{weights}: sha256 {digest[:12]}… does not match the run manifest's "
                               f"{run.weights.sha256[:12]}… (file changed after training?)")
        return ResolvedWeights(WeightsInfo(f"file:{weights.name}", sha256=digest), pretrained=True,
                               path=weights, variant=run.variant, run=run)
    if not path.is_file():
        if path.suffix in WEIGHT_SUFFIXES or os.sep in str(path):
            raise WeightsError(f"weights not found: {path}")
        raise WeightsError(f"--weights {str(path)!r}: not a file or folder; expected {HELP}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(f"{path}: unknown weights format; expected one of {', '.join(WEIGHT_SUFFIXES)}")
    return ResolvedWeights(WeightsInfo(f"file:{path.name}", sha256=sha256_file(path)), pretrained=True,
                           path=path, variant=path.stem)


def _from_hub(repo: str, revision: str, filenames: tuple[str, ...]) -> ResolvedWeights:
    """Download (or find in the cache) the first of ``filenames`` that ``repo`` has."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise WeightsError("huggingface_hub is not installed (pip install 'hyena_serve[hub]')") from None
    missing = []
    for filename in filenames:
        try:
            path = _hub_download(repo, filename, revision)
        except _NotInRepo:
            missing.append(filename)
            continue
        source = f"{HF_PREFIX}{repo}@{revision}/{filename}"
        return ResolvedWeights(WeightsInfo(source, sha256=sha256_file(path)), pretrained=True, path=path,
                               variant=repo.split("/")[1])
    raise WeightsError(f"Hub repository {repo}@{revision} has none of {', '.join(missing)}")


class _NotInRepo(Exception):
    pass


def _download(repo: str, filename: str, revision: str) -> Path:
    from huggingface_hub import hf_hub_download

    _probe(repo, filename, revision)
    try:
        return Path(hf_hub_download(repo, filename, revision=revision, library_name="hyena_serve",
                                    library_version=__version__))
    except BaseException:
        _drop_incomplete(repo)
        raise


def _hub_download(repo: str, filename: str, revision: str) -> Path:
    """hf_hub_download with its errors turned into one-line :class:`WeightsError` s."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo}@{revision}/{filename}"
    try:
        return _download(repo, filename, revision)
    except RemoteEntryNotFoundError:
        raise _NotInRepo() from None
    except RevisionNotFoundError:
        raise WeightsError(f"{repo} has no revision {revision!r}") from None
    except GatedRepoError:
        raise WeightsError(f"{repo} is gated: accept its terms on the Hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise WeightsError(f"Hub repository {repo} not found (or private: set HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
        raise WeightsError(f"{where} is not in the local Hugging Face cache and {why}") from None
    except (HfHubHTTPError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"downloading {where} failed: {first}") from None


def _probe(repo: str, filename: str, revision: str) -> None:
    """Fail fast when the file is not cached and the Hub does not answer: the client would
    retry a failed first download with backoff for half a minute, on every start of a
    machine that simply has no route to the Hub."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(repo, filename, revision=revision), str):
        return
    try:
        get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError:
        return  # the Hub answered: hf_hub_download raises the precise error
    except Exception as exc:  # noqa: BLE001  (connection refused, DNS, timeout: all mean "unreachable")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{repo}@{revision}/{filename} is not in the local Hugging Face cache and the Hub "
                           f"cannot be reached ({reason})") from None


def _drop_incomplete(repo: str) -> None:
    """Remove partial downloads the Hub client keeps for resuming: a failed fetch leaves
    nothing half-written behind (the next attempt downloads from the start)."""
    from huggingface_hub import constants

    blobs = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "blobs"
    for partial in blobs.glob("*.incomplete"):
        partial.unlink(missing_ok=True)
