"""Model backends other than an in-process transformers model.

``served``: a model behind a vLLM (OpenAI-compatible) server, spec ``vllm:URL[#name]``.
"""
