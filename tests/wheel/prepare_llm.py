"""Export a one-file LLM for ``make test-wheel``'s C++ check, with the checkout's Python.

The installed wheel's check (``check_installed.py``) runs in a fresh virtual
environment that holds only the wheel and its dependencies, not mlx-lm.
This script, run by the development environment's Python, exports a tiny
mlx-lm Llama with ``examples/llm_one_file.py`` into ``DIR/llm.mlxfn`` and
writes ``DIR/expected.json``: prompts and the tokens that Python generates
greedily from that file (checked against the model run directly).

    python tests/wheel/prepare_llm.py DIR
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import mlxfn  # noqa: E402

import llm_one_file as llm  # noqa: E402  (examples/, just added)

COUNT = 16


def main(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    model = llm.tiny_model("llama", False)
    path = folder / "llm.mlxfn"
    if "kind" in inspect.signature(llm.export).parameters:
        llm.export(model, path, kind="concatenate")
    else:
        llm.export(model, path)
    step = mlxfn.import_function(path)
    cases = []
    for length in (3, 11):
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        tokens = llm.generate(step, prompt, COUNT)
        if tokens != llm.generate_directly(model, prompt, COUNT):
            print("prepare_llm: the imported file does not generate what the model does", file=sys.stderr)
            return 1
        cases.append({"prompt": prompt, "count": COUNT, "tokens": tokens})
    (folder / "expected.json").write_text(json.dumps(cases))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
