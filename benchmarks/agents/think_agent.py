"""THINK through the kernel's LLM queue (google-genai against Gemini, or the local fake offline)."""

import time

from suite_helpers import Agent, percentiles, run


def main(agent: Agent) -> dict:
    answers, latencies_ms = [], []
    for prompt in agent.params["prompts"]:
        t0 = time.perf_counter_ns()
        reply = agent.client.think(prompt)
        latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)
        answers.append(
            {
                "prompt": prompt,
                "success": reply.get("success", False),
                "content": reply.get("content", ""),
                "tokens": reply.get("tokens", 0),
                "error": reply.get("error"),
            }
        )
    return {"answers": answers, "think_ms": percentiles(latencies_ms)}


run(main)
