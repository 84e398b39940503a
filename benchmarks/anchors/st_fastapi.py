"""The anchor a user would write by hand: sentence-transformers behind a FastAPI endpoint (OpenAI's shape).

    python -m benchmarks.anchors.st_fastapi MODEL_DIR PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(sys.argv[1], device="cpu")
app = FastAPI()


class EmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str | None = None


@app.post("/v1/embeddings")
def embeddings(request: EmbeddingRequest) -> dict:
    texts = [request.input] if isinstance(request.input, str) else request.input
    vectors = model.encode(texts, normalize_embeddings=True)
    return {"object": "list", "model": "all-MiniLM-L6-v2",
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": 0, "total_tokens": 0}}


@app.get("/health")
def health() -> dict:
    return {}


if __name__ == "__main__":
    print(f"serving on http://127.0.0.1:{sys.argv[2]}", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
