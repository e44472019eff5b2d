"""What a model run is made of, below both the decoding loop and the backends: a pass's
scores and top-k lists (:mod:`.scores`), the batched KV-cache stream over a local model
(:mod:`.stream`, :mod:`.kvcache`) and what a token adds to the text (:mod:`.vocab`).
Nothing here imports the decoding loop or a backend."""
