"""An asyncio HTTP inference server whose concurrent requests ringflow batches together.

POST /infer takes one sample, as JSON {"input": [[...]]} or as a .npy body, and answers with the
top-5 classes; GET /stats serves run.stats() as JSON. By default this script starts the server in a
child process on loopback, loads it from here with a bounded number of concurrent requests, checks
every answer against onnxruntime.InferenceSession.run, and does the same for the usual alternative:
the same server calling session.run through loop.run_in_executor.

Usage: python asyncio_server.py [--model PATH.onnx] [--requests N] [--concurrency C]
       python asyncio_server.py --serve PORT [--backend ringflow|executor]   # serve until Ctrl-C
Needs aiohttp: pip install "ringflow[server]".
"""

import argparse
import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import tutorial  # noqa: E402

import ringflow as rf  # noqa: E402

TOP_K = 5


def top5_of(logits: np.ndarray) -> list[list]:
    """[[class, score], ...] best first, ties to the lower class: what rf.TopK computes."""
    best = np.argsort(-logits, kind="stable")[:TOP_K]
    return [[int(i), float(logits[i])] for i in best]


async def read_input(request) -> np.ndarray:
    """The request's tensor: a .npy body (dtype and shape travel with it), or JSON {"input": ...}
    read as float32."""
    body = await request.read()
    if request.content_type == "application/json":
        return np.asarray(json.loads(body)["input"], dtype=np.float32)
    return np.load(io.BytesIO(body), allow_pickle=False)


def make_app(backend: str, model_path: str, args: argparse.Namespace):
    from aiohttp import web

    if backend == "ringflow":
        # One Run for every request: the model, then TopK on the engine's threads. Concurrent
        # requests are stacked into batches of up to max_batch.
        graph = rf.Graph().add(rf.Model(model_path).graph()).add(rf.TopK(TOP_K))
        run = graph.build(rf.Model(model_path).synthetic_inputs(seed=0),
                          rf.RunOptions(queue_depth=256, max_batch=args.max_batch, max_delay_us=args.max_delay_us))

        async def infer(x: np.ndarray) -> list[list]:
            sample = await run.infer(x)  # never blocks the loop; other requests go on meanwhile
            return [[int(i), float(s)] for i, s in zip(sample["topk_indices"][0], sample["topk_scores"][0])]

        def stats() -> str:
            return run.stats().to_json()
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[0]
        name = spec.name
        served = 0

        async def infer(x: np.ndarray) -> list[list]:
            nonlocal served
            if x.dtype != np.float32 or x.ndim != len(spec.shape) or any(
                    isinstance(d, int) and d != n for d, n in zip(spec.shape, x.shape)):
                raise ValueError(f"expected a float32 tensor of shape {spec.shape}, got {x.dtype} {list(x.shape)}")
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(None, session.run, None, {name: x})
            served += 1
            return top5_of(outputs[0][0])

        def stats() -> str:
            return json.dumps({"outputs_pulled": served})

    async def handle_infer(request):
        try:
            x = await read_input(request)
            return web.json_response({"top5": await infer(x)})
        except web.HTTPException:  # aiohttp's own answers, such as 413 for a body beyond client_max_size
            raise
        except (rf.ShapeError, rf.DTypeError, ValueError, KeyError) as error:
            # A bad request fails alone, with what was wrong; the server goes on.
            return web.json_response({"error": type(error).__name__, "message": str(error)}, status=400)
        except Exception as error:  # noqa: BLE001 - the server answers every request
            return web.json_response({"error": type(error).__name__, "message": str(error)}, status=500)

    async def handle_stats(_request):
        return web.Response(text=stats(), content_type="application/json")

    app = web.Application(client_max_size=64 * 2**20)  # a ResNet-50 input as JSON is about 3 MB
    app.add_routes([web.post("/infer", handle_infer), web.get("/stats", handle_stats)])
    return app


def serve(args: argparse.Namespace, model_path: str) -> None:
    from aiohttp import web

    async def main() -> None:
        runner = web.AppRunner(make_app(args.backend, model_path, args), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.serve)
        await site.start()
        port = runner.addresses[0][1]
        print(f"listening on http://{args.host}:{port}", flush=True)  # the parent waits for this line
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


async def load(url: str, inputs: list[np.ndarray], concurrency: int, time_limit_s: float) -> dict:
    """`concurrency` clients send the inputs in turn, half as JSON and half as .npy, until all are
    answered or the time limit passes. Returns the answers by input index and each latency."""
    import aiohttp

    answers: dict[int, dict] = {}
    latencies: list[float] = []
    next_index = 0
    deadline = time.perf_counter() + time_limit_s

    async def client(session) -> None:
        nonlocal next_index
        while next_index < len(inputs) and time.perf_counter() < deadline:
            i, next_index = next_index, next_index + 1
            if i % 2:
                buffer = io.BytesIO()
                np.save(buffer, inputs[i])
                body = {"data": buffer.getvalue(), "headers": {"Content-Type": "application/x-npy"}}
            else:
                body = {"json": {"input": inputs[i].tolist()}}
            start = time.perf_counter()
            async with session.post(f"{url}/infer", **body) as reply:
                answers[i] = {"status": reply.status, **await reply.json()}
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        async with session.get(f"{url}/stats") as reply:
            stats = await reply.json()
        bad = np.zeros((1, 3), np.float32)  # the wrong shape: answered with a 400, nothing else lost
        async with session.post(f"{url}/infer", json={"input": bad.tolist()}) as reply:
            bad_reply = {"status": reply.status, **await reply.json()}
    return {"answers": answers, "latencies": latencies, "elapsed": elapsed, "stats": stats, "bad": bad_reply}


def start_server(backend: str, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, __file__, "--serve", "0", "--backend", backend, "--host", args.host,
               "--max-batch", str(args.max_batch), "--max-delay-us", str(args.max_delay_us)]
    if args.model:
        command += ["--model", args.model]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = child.stdout.readline()
    if not line.startswith("listening on "):
        child.kill()
        raise RuntimeError(f"the {backend} server did not start (exit status {child.wait()})")
    return child, line.split()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX file with one float32 input (default: the built-in tiny-mlp)")
    parser.add_argument("--requests", type=int, default=500, help="requests to send to each server")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight at once")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds of load at most, per server")
    parser.add_argument("--max-batch", type=int, default=8, help="ringflow's dynamic batching: samples per batch")
    parser.add_argument("--max-delay-us", type=int, default=500, help="and how long a batch waits to fill")
    parser.add_argument("--host", default="127.0.0.1", help="where the servers listen (default: loopback only)")
    parser.add_argument("--serve", type=int, metavar="PORT", help="only serve, on PORT (0: any free port)")
    parser.add_argument("--backend", choices=["ringflow", "executor"], default="ringflow", help="with --serve")
    args = parser.parse_args()
    for name in ("requests", "concurrency", "max_batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    model_path = args.model or str(rf.models.ensure("tiny-mlp"))
    if args.serve is not None:
        serve(args, model_path)
        return

    import onnxruntime as ort

    # The oracle: onnxruntime on each input, top-5 taken the way TopK takes it.
    oracle = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    spec = oracle.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in spec.shape]
    rng = np.random.default_rng(22)
    inputs = [rng.standard_normal(shape).astype(np.float32) for _ in range(args.requests)]
    expected = [top5_of(oracle.run(None, {spec.name: x})[0][0]) for x in inputs]

    print(f"model={Path(model_path).stem} requests={args.requests} concurrency={args.concurrency}")
    rps = {}
    for backend in ("ringflow", "executor"):
        child, url = start_server(backend, args)
        try:
            result = asyncio.run(load(url, inputs, args.concurrency, args.time_limit))
        finally:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=30)
        answers = result["answers"]
        errors = sum(1 for a in answers.values() if a["status"] != 200)
        equal = all(a["status"] == 200 and [p[0] for p in a["top5"]] == [p[0] for p in expected[i]]
                    and np.allclose([p[1] for p in a["top5"]], [p[1] for p in expected[i]], rtol=1e-4, atol=1e-5)
                    for i, a in answers.items())
        latencies_ms = np.array(result["latencies"]) * 1000
        rps[backend] = len(answers) / result["elapsed"]
        print(f"{backend} answered={len(answers)} equal_oracle={str(equal).lower()} errors={errors}")
        print(f"{backend}_rps={rps[backend]:.1f}")
        print(f"{backend}_p50_ms={np.percentile(latencies_ms, 50):.2f}")
        print(f"{backend}_p99_ms={np.percentile(latencies_ms, 99):.2f}")
        if backend == "ringflow":
            print(f"ringflow_avg_batch={result['stats']['avg_batch_size']:.1f}")
        print(f"{backend} stats outputs_pulled={result['stats']['outputs_pulled']}")
        print(f"{backend} bad_request status={result['bad']['status']}")
        if len(answers) < args.requests:
            raise RuntimeError(f"the {backend} server answered {len(answers)} of {args.requests} requests "
                               f"within --time-limit {args.time_limit:g} s")
        if not equal or errors:
            raise RuntimeError(f"the {backend} server's answers differ from onnxruntime's")
    print(f"speedup={rps['ringflow'] / rps['executor']:.2f}")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "022_asyncio_server"))
