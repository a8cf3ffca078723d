"""A browser-like API client for the benchmark: Gradio's own HTTP protocol (sse_v3) over ONE keep-alive
httpx connection pool, the event stream read as it arrives and the output pictures fetched in parallel, as
the page's JavaScript client does.

It exists to separate the server's cost from `gradio_client`'s: that client opens a new httpx client (and
SSL context) for every upload, join, stream and download, and its job thread polls the event stream's
messages every 50 ms (`gradio_client/utils.py`, `stream_sse_v1plus`), so no request it makes can finish in
under ~50 ms. Only for timing; the app's documented API client stays `gradio_client`.
"""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx


class HttpClient:
    def __init__(self, url: str, api_name: str = "predict"):
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=60)
        config = self.http.get("/config").raise_for_status().json()
        self.prefix = config.get("api_prefix", "/gradio_api")
        dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
        comps = {c["id"]: c for c in config["components"]}
        info = self.http.get(f"{self.prefix}/info").raise_for_status().json()
        names = iter(p["parameter_name"] for p in info["named_endpoints"][f"/{api_name}"]["parameters"])
        # one slot per input component: (parameter name or None for gr.State, its default value)
        self.slots = [(None, None) if comps[i]["type"] == "state" else (next(names), comps[i]["props"].get("value"))
                      for i in dep["inputs"]]
        self.fn_index = dep["id"]
        self.session = uuid.uuid4().hex  # one session per client, as one browser tab has
        self.pool = ThreadPoolExecutor(6)  # a browser fetches about six files at once from one host

    def upload(self, path: Path) -> dict:
        with open(path, "rb") as f:
            r = self.http.post(f"{self.prefix}/upload", files={"files": (path.name, f)}).raise_for_status()
        return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def predict(self, image: Path, **controls: Any) -> list:
        """One request: upload, join the queue, read the stream to the result, fetch every output file."""
        given = {"image": self.upload(image), **controls}
        data = [given.get(name, default) if name else None for name, default in self.slots]
        self.http.post(f"{self.prefix}/queue/join", json={
            "data": data, "event_data": None, "fn_index": self.fn_index, "trigger_id": None,
            "session_hash": self.session}).raise_for_status()
        output = None
        with self.http.stream("GET", f"{self.prefix}/queue/data", params={"session_hash": self.session}) as r:
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    if not msg.get("success"):
                        raise RuntimeError(f"request failed: {msg.get('output')}")
                    output = msg["output"]["data"]
                    break
        if output is None:
            raise RuntimeError("the event stream ended without a result")
        urls = [u for o in output for u in _urls(o)]
        if not all(self.pool.map(lambda u: self.http.get(u).raise_for_status().content, urls)):
            raise RuntimeError("an output file came back empty")
        return output

    def close(self) -> None:
        self.pool.shutdown()
        self.http.close()


def _urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        if value.get("meta", {}).get("_type") == "gradio.FileData" and value.get("url"):
            return [value["url"]]
        return [u for v in value.values() for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return []
