"""hyena-serve: run the gateway, classify images, build the Triton repository, run a
local Triton, train and export.

    hyena-serve serve                      # http://127.0.0.1:8080/docs (embedded ONNX Runtime)
    hyena-serve classify cat.jpg --top-k 3 # against a running gateway (or --in-process)
    hyena-serve repo --res 224             # export ONNX + fill model_repository/
    hyena-serve triton                     # local tritonserver on model_repository/
    hyena-serve train ... / export ...     # forwarded to hyena_serve.train / the ONNX exporter
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hyena_serve.cli_flags import add_backend_flags, add_model_flags, add_precision_flag, one_line, settings_from_args

DEFAULT_URL = "http://127.0.0.1:8080"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# --- forwarded subcommands ------------------------------------------------------------------


def _train(argv: list[str]) -> int:
    from hyena_serve.train import main

    return main(argv) or 0


def _export(argv: list[str]) -> int:
    from hyena_serve.exporting.cli import main

    return main(argv) or 0


def _triton(argv: list[str]) -> int:
    from hyena_serve.triton_local import main

    return main(argv) or 0


FORWARDED: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "train": (_train, "train a model (arguments go to hyena_serve.train; see `hyena-serve train --help`)"),
    "export": (_export, "export a model to ONNX (same as export/to_onnx.py; "
                        "see `hyena-serve export --help`)"),
    "triton": (_triton, "run a local tritonserver on the model repository until Ctrl-C "
                        "(see `hyena-serve triton --help`)"),
}


# --- shared flags ---------------------------------------------------------------------------


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    add_model_flags(p.add_argument_group("model (default: HYENA_* environment, then built-in defaults)"))
    add_backend_flags(p.add_argument_group("backend"))


# --- serve -------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hyena_serve.gateway import create_app

    from hyena_serve.gateway.tracing import configure_access_log

    try:
        settings = settings_from_args(args)
        if getattr(args, "access_log_json", None):  # not among cli_flags' shared settings flags
            settings = settings.model_copy(update={"access_log_json": True})
        logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
        configure_access_log(settings.access_log_json)
        app = create_app(settings)  # builds the backend: a precision it cannot run is refused here
    except ValueError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    logging.getLogger("hyena_serve").info(
        "serving with the %s backend on http://%s:%d (docs at /docs)", settings.backend, settings.host, settings.port)
    # the gateway writes its own access log (request id, route, stages); uvicorn's would repeat it
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                access_log=not settings.access_log, timeout_keep_alive=settings.keep_alive_s)
    return 0


# --- classify ----------------------------------------------------------------------------------


def cmd_classify(args: argparse.Namespace) -> int:
    images = [(str(path), Path(path).read_bytes()) for path in args.images]
    if args.in_process:
        results = asyncio.run(_classify_in_process(args, images))
    else:
        api_key = args.api_key if args.api_key is not None else os.environ.get("HYENA_API_KEY") or None
        results = _classify_remote(args.url or DEFAULT_URL, images, args.top_k, args.timeout, api_key)
    failed = 0
    if args.json:
        print(json.dumps([{"image": name, "status": status, **body} for name, status, body in results], indent=2))
    for name, status, body in results:
        if status != 200:
            failed += 1
            if not args.json:
                print(f"{name}: HTTP {status}: {body.get('error')}: {body.get('detail')}", file=sys.stderr)
            continue
        if not args.json:
            flag = "" if body["pretrained"] else "  (random weights: predictions are meaningless)"
            print(f"{name}  [{body['model']}, {body['backend']}]{flag}")
            for rank, p in enumerate(body["results"][0]["predictions"], 1):
                print(f"  {rank:2d}. {p['probability']:7.2%}  {p['label']} ({p['index']})")
    return 1 if failed else 0


def _classify_remote(url: str, images, top_k: int, timeout: float,
                     api_key: str | None = None) -> list[tuple[str, int, dict]]:
    import httpx

    results = []
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers) as client:
        for name, data in images:
            try:
                r = client.post("/v1/classify", params={"top_k": top_k}, files={"file": (Path(name).name, data)})
            except httpx.HTTPError as exc:
                results.append((name, 0, {"error": "connection failed", "detail": f"{url}: {exc}"}))
                continue
            try:
                body = r.json()
            except ValueError:
                body = {"error": "invalid response", "detail": r.text[:200]}
            results.append((name, r.status_code, body))
    return results


async def _classify_in_process(args: argparse.Namespace, images) -> list[tuple[str, int, dict]]:
    from starlette.exceptions import HTTPException

    from hyena_serve.gateway.main import Gateway
    from hyena_serve.preprocess import ImageError

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    gateway = Gateway(settings_from_args(args))
    await gateway.open()
    results = []
    try:
        await gateway.wait_started()
        for name, data in images:
            try:
                results.append((name, 200, await gateway.classify([data], args.top_k)))
            except ImageError as exc:
                results.append((name, exc.status, {"error": "invalid image", "detail": exc.reason}))
            except HTTPException as exc:
                results.append((name, exc.status_code, {"error": getattr(exc, "error", "error"), "detail": exc.detail}))
    finally:
        await gateway.close()
    return results


# --- repo ----------------------------------------------------------------------------------------


def cmd_repo(args: argparse.Namespace) -> int:
    from hyena_serve.artifact import ArtifactError, build_artifact, open_artifact
    from hyena_serve.model_repo import fill_repository

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        settings = settings_from_args(args)
        if settings.onnx_path is not None:
            artifact = open_artifact(settings.onnx_path)
        else:
            if settings.precision == "fp16":  # the entries' configs declare float32 I/O (TensorRT builds its own)
                raise ValueError("the Triton entries take float32 I/O: build the repository in fp32 or int8 "
                                 "(an fp16 engine comes from export/to_trt.py --fp16)")
            artifact = build_artifact(settings.model_spec(), settings.artifacts_dir, precision=settings.precision)
        entries = fill_repository(args.repository, artifact, link=args.link)
    except (ArtifactError, FileNotFoundError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    m = artifact.manifest
    print(f"{args.repository}: {m.model} at {m.resolution} px ({m.weights.describe()}) from {artifact.onnx_path}")
    for flavour, path in entries.items():
        print(f"  {flavour:5s} {path}")
    print(f"serve it with: hyena-serve triton --model-repository {args.repository}")
    return 0


# --- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyena-serve", description=__doc__.split("\n\n")[0],
        epilog="Settings also come from HYENA_* environment variables (see hyena_serve.gateway.settings); "
               "flags override them.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("serve", help="run the HTTP gateway (uvicorn)",
                       description="Run the FastAPI gateway. With the default embedded backend the model is "
                                   "exported to ONNX on first start (cached in the artifacts dir); /v2/health/ready "
                                   "turns 200 once it is loaded.")
    _add_model_flags(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", help="bind address (HYENA_HOST, default 127.0.0.1)")
    g.add_argument("--port", type=int, help="port (HYENA_PORT, default 8080)")
    g.add_argument("--max-body-bytes", type=int, help="largest request body (HYENA_MAX_BODY_BYTES)")
    g.add_argument("--max-concurrency", type=int, help="classify requests processed at once (HYENA_MAX_CONCURRENCY)")
    g.add_argument("--request-timeout", dest="request_timeout_s", type=float, help="inference timeout in seconds")
    g.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="HYENA_LOG_LEVEL")
    g.add_argument("--access-log-json", action="store_const", const=True, default=None,
                   help="access log as JSON lines on stdout (HYENA_ACCESS_LOG_JSON)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("classify", help="classify image files",
                       description="Classify images with a running gateway (--url) or in this process "
                                   "(--in-process, using the same settings as `serve`).")
    p.add_argument("images", nargs="+", metavar="IMAGE", type=Path, help="image files")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", help=f"gateway URL (default {DEFAULT_URL})")
    where.add_argument("--in-process", action="store_true", help="load the model here instead of calling a gateway")
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--json", action="store_true", help="print the responses as JSON")
    p.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout in seconds (default 60)")
    p.add_argument("--api-key", help="API key sent as 'Authorization: Bearer <key>' to a gateway with auth on "
                                     "(default: HYENA_API_KEY)")
    _add_model_flags(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("repo", help="export ONNX and fill the Triton model repository",
                       description="Build the served-model artifact (ONNX + manifest, cached in the artifacts "
                                   "dir and shared with the embedded backend) and put it into the Triton "
                                   "repository (<model>_cpu, <model>_onnx; the config of <model>_trt). The model "
                                   "comes from the same flags and HYENA_* settings as `serve`.")
    add_model_flags(p.add_argument_group("model (default: HYENA_* environment, then built-in defaults)"))
    add_precision_flag(p)
    p.add_argument("--onnx", dest="onnx_path", type=Path, help="use this exported ONNX file (and its manifest)")
    p.add_argument("--repository", type=Path, default=Path("model_repository"), help="default ./model_repository")
    p.add_argument("--link", action="store_true", help="symlink the ONNX file instead of copying it")
    p.set_defaults(func=cmd_repo)

    for name, (_, text) in FORWARDED.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:
        return FORWARDED[argv[0]][0](argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
