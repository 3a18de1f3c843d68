"""The README's "Put the router in front of your LLM calls" examples, run as written (curl,
the openai client, LiteLLM) against a gateway and a provider simulator on free ports."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.helpers import REPO
from tests.pipeline.gateway_helpers import KEY, gateway
from tests.pipeline.generator.helpers import simulator

SECTION = "## Put the router in front of your LLM calls"


def examples() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", 10)]
    return re.findall(r"```(bash|python)\n(.*?)```", section, re.S)


def test_the_readme_section_has_curl_openai_and_litellm_examples():
    blocks = examples()
    assert any(k == "bash" and "curl" in b for k, b in blocks)
    assert any(k == "python" and "import openai" in b for k, b in blocks)
    assert any(k == "python" and "import litellm" in b for k, b in blocks)


@pytest.mark.slow
def test_the_readme_examples_run(tmp_path, embedder, capfd):
    pytest.importorskip("litellm")
    os.environ["GW_PROVIDER_KEY"] = KEY
    with simulator(embedder) as (sim_url, _), gateway(tmp_path, sim_url, embedder) as (gw, _):
        gw_port, sim_port = gw.split(":")[2].split("/")[0], sim_url.split(":")[2].split("/")[0]
        for kind, code in examples():
            code = code.replace("8088", gw_port).replace("8090", sim_port)
            if kind == "bash" and "curl" in code:
                out = subprocess.run(["bash", "-c", code], capture_output=True, text=True,
                                     timeout=120)
                answer = json.loads(out.stdout)
                assert answer["stage5"]["tiers"] and answer["model"] in answer["stage5"]["tiers"]
            elif kind == "python":
                exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capfd.readouterr().out
    assert "gpt-oss" in printed or "qwen" in printed
