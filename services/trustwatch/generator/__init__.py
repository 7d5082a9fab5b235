"""The generator service: prompt jobs in, completions out, through a back-end (vllm or openai)."""
