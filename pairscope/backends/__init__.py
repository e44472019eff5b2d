"""Model backends behind one interface (``base.Backend``).

``local``: a transformers model in this process; ``served``: a model behind a vLLM
(OpenAI-compatible) server, spec ``vllm:URL[#name]``; ``vllm_server`` starts one.
``pairscope.models.load_model`` picks the backend by the spec's prefix.
"""
